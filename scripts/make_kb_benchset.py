"""Labelled retrieval set for `deepfeed bench kb` (run from the repo root with any python3):
benchmarks/kb/docs.jsonl (60 short documents: 30 English, 30 Chinese) and
benchmarks/kb/questions.jsonl (240 questions, 4 per document, each answered by exactly one
document). Documents describe fictional products, offices and policies so no model knows the
answers beforehand; questions paraphrase the document's wording (a question rarely repeats the
exact sentence), and every document names a unique entity so the gold document is unambiguous.
Deterministic (seed 0)."""
import json, os, random

random.seed(0)
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "kb")

EN_NAMES = ["Orvalis", "Quentara", "Bramblix", "Solvane", "Tirrow", "Maplequist", "Zentrix", "Halloran", "Pevrick", "Corvana",
            "Lumetta", "Grisdale", "Ostrava", "Velquin", "Draymore", "Fennick", "Isolde", "Jarrowby", "Kestrel", "Nimbara",
            "Ombrel", "Pallisade", "Rowanta", "Sestina", "Thorncliff", "Ulvara", "Wexford", "Yarrowen", "Zephyrine", "Abernook"]
ZH_NAMES = ["星河", "云岭", "青禾", "墨川", "晨曦", "松涛", "海棠", "白鹭", "金穗", "紫荆", "秋水", "远山", "银杏", "朝阳", "碧波",
            "翠竹", "流萤", "春雷", "明月", "清泉", "凌霄", "锦程", "瑞雪", "丹枫", "玉兰", "长风", "沧澜", "雁南", "梧桐", "若溪"]
CITIES_EN = ["Lisbon", "Oslo", "Toronto", "Nairobi", "Osaka", "Lima", "Dublin", "Hanoi", "Perth", "Tallinn"]
CITIES_ZH = ["杭州", "成都", "西安", "青岛", "厦门", "武汉", "南京", "长沙", "昆明", "大连"]
COLOURS_EN = ["slate grey", "forest green", "coral red", "ivory white", "midnight blue"]
COLOURS_ZH = ["石板灰", "森林绿", "珊瑚红", "象牙白", "午夜蓝"]
KINDS_EN = [("robot vacuum", "cleans"), ("electric kettle", "boils water"), ("smart thermostat", "controls heating"),
            ("e-bike", "carries one rider"), ("label printer", "prints shipping labels"), ("air purifier", "filters the air")]
KINDS_ZH = [("扫地机器人", "清扫地面"), ("电热水壶", "烧水"), ("智能温控器", "控制暖气"), ("电动自行车", "载一名骑手"), ("标签打印机", "打印快递标签"), ("空气净化器", "过滤空气")]

docs, questions = [], []

for i, name in enumerate(EN_NAMES):
    kind, does = KINDS_EN[i % len(KINDS_EN)]
    price = random.randint(40, 900)
    warranty = random.choice([1, 2, 3, 5])
    city = CITIES_EN[i % len(CITIES_EN)]
    colour = COLOURS_EN[i % len(COLOURS_EN)]
    hours = random.randint(2, 40)
    phone = f"0{random.randint(100, 999)}-{random.randint(1000000, 9999999)}"
    doc_id = f"en-{i:02d}"
    text = (f"The {name} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} that {does}. It sells for {price} euros including tax. "
            f"Every {name} comes with a {warranty}-year warranty covering parts and repairs. "
            f"It is assembled in our {city} plant and ships in {colour}. "
            f"On a full charge the {name} runs for {hours} hours. "
            f"Customers reach the {name} service desk at {phone}.")
    docs.append({"id": doc_id, "lang": "en", "title": f"{name} {kind}", "text": text})
    for q in [f"How much does the {name} cost?", f"How long is the guarantee on a {name}?",
              f"Which city is the {name} built in?", f"What is the battery runtime of the {name}?"]:
        questions.append({"question": q, "doc_id": doc_id, "lang": "en"})

for i, name in enumerate(ZH_NAMES):
    kind, does = KINDS_ZH[i % len(KINDS_ZH)]
    price = random.randint(200, 6000)
    warranty = random.choice([1, 2, 3, 5])
    city = CITIES_ZH[i % len(CITIES_ZH)]
    colour = COLOURS_ZH[i % len(COLOURS_ZH)]
    hours = random.randint(2, 40)
    phone = f"400-{random.randint(100, 999)}-{random.randint(1000, 9999)}"
    doc_id = f"zh-{i:02d}"
    text = (f"{name}{kind}用于{does}。售价为{price}元，含税。"
            f"每台{name}提供{warranty}年保修，包括零件和维修。"
            f"它在我们的{city}工厂组装，颜色为{colour}。"
            f"充满电后，{name}可以连续工作{hours}小时。"
            f"客户可以拨打{phone}联系{name}售后服务。")
    docs.append({"id": doc_id, "lang": "zh", "title": f"{name}{kind}", "text": text})
    for q in [f"{name}多少钱？", f"{name}的质保期是多久？", f"{name}是在哪个城市生产的？", f"{name}充一次电能用多长时间？"]:
        questions.append({"question": q, "doc_id": doc_id, "lang": "zh"})

os.makedirs(OUT, exist_ok=True)
for fname, rows in [("docs.jsonl", docs), ("questions.jsonl", questions)]:
    with open(os.path.join(OUT, fname), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(len(docs), "documents,", len(questions), "questions ->", OUT)
