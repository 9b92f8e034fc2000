#!/usr/bin/env python3
"""Writes crates/deepfeed-data/tests/fixtures/pii_testset.jsonl: a labelled, seeded test set for the
de-identifier. Each line: {"text": ..., "entities": [{"type": T, "value": V}, ...]}.

Positives: valid mainland ID numbers (checksum), mobile, landline and 400/800 phones in common
layouts, bank cards (Luhn), e-mails and IPv4 addresses inside Chinese and English sentences;
Chinese and English postal addresses (ADDRESS) and names in context (NAME: after 联系人/姓名/我叫,
before 先生/女士/经理, after Mr./Ms./Dr./Name:), a few with surnames outside the detector's list.
Hard negatives (labelled with no entity): order numbers and timestamps of the same length, IDs with
a wrong checksum or impossible birth date, card-like numbers failing Luhn, version strings,
prices, dates, tracking numbers, numbers glued to longer digit runs; place names without an
address (城市, 地铁3号线, 长安街), role words before titles (项目经理, 语文老师), cue words not
followed by a name (客户满意度), capitalised words after English titles that are not names.

    python3 scripts/make_pii_testset.py
"""
import json
import os
import random

R = random.Random(20261129)
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "crates", "deepfeed-data", "tests", "fixtures", "pii_testset.jsonl")
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK = "10X98765432"


def id_card(valid=True):
    area = f"{R.choice([11, 31, 44, 51, 33, 32, 61, 23])}{R.randint(0, 9999):04d}"
    birth = f"{R.randint(1950, 2010)}{R.randint(1, 12):02d}{R.randint(1, 28):02d}"
    body = area + birth + f"{R.randint(0, 999):03d}"
    c = CHECK[sum(int(d) * w for d, w in zip(body, W)) % 11]
    if not valid:
        c = R.choice([x for x in CHECK if x != c])
    return body + c


def luhn_digit(body):
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d)
        if i % 2 == 0:
            n *= 2
            n -= 9 if n > 9 else 0
        total += n
    return str((10 - total % 10) % 10)


def bank_card(valid=True):
    prefix, length = R.choice([("62", 16), ("62", 19), ("4", 16), ("51", 16), ("53", 16), ("55", 16), ("37", 15)])
    body = prefix + "".join(str(R.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    d = luhn_digit(body)
    if not valid:
        d = str((int(d) + R.randint(1, 9)) % 10)
    return body + d


def mobile():
    n = f"1{R.choice('3456789')}{R.randint(0, 999999999):09d}"
    layout = R.random()
    if layout < 0.5:
        return n
    if layout < 0.7:
        return f"{n[:3]}-{n[3:7]}-{n[7:]}"
    if layout < 0.85:
        return f"{n[:3]} {n[3:7]} {n[7:]}"
    return f"+86 {n}"


def landline():
    if R.random() < 0.15:
        return f"{R.choice(['400', '800'])}-{R.randint(100, 999)}-{R.randint(1000, 9999)}"
    area = R.choice(["010", "021", "0755", "020", "0571", "028"])
    num = f"{R.randint(20000000, 99999999)}" if len(area) == 3 else f"{R.randint(2000000, 9999999)}"
    return R.choice([f"{area}-{num}", f"({area}){num}", f"{area}-{num}", f"({area}) {num}"])


PLACES = [
    ("广东省", "深圳市", ["南山区", "福田区", "宝安区"]),
    ("浙江省", "杭州市", ["西湖区", "滨江区", "拱墅区"]),
    ("江苏省", "南京市", ["鼓楼区", "玄武区", "建邺区"]),
    ("四川省", "成都市", ["武侯区", "锦江区", "高新区"]),
    ("湖北省", "武汉市", ["洪山区", "江汉区", "武昌区"]),
    ("", "北京市", ["朝阳区", "海淀区", "东城区"]),
    ("", "上海市", ["浦东新区", "徐汇区", "静安区"]),
]
ROADS = ["建国路", "科技园路", "文三路", "中山大道", "南京东路", "解放街", "长安街", "学院路", "滨江大道", "人民南路", "春熙路", "中关村大街"]
ESTATES = ["阳光花园", "翠苑小区", "金色家园", "锦绣公寓", "世纪大厦"]


def cn_address():
    prov, city, dists = R.choice(PLACES)
    dist = R.choice(dists)
    number = R.choice([f"{R.randint(1, 999)}号", f"{R.randint(1, 300)}弄{R.randint(1, 60)}号"])
    building = R.choice(["", "", f"{R.randint(1, 30)}栋{R.randint(1, 6)}单元{R.randint(1, 30)}0{R.randint(1, 4)}室", f"{R.randint(1, 20)}号楼{R.randint(1, 30)}0{R.randint(1, 4)}室", f"A座{R.randint(1, 40)}0{R.randint(1, 9)}室"])
    layout = R.random()
    if layout < 0.35:
        return prov + city + dist + R.choice(ROADS) + number + building
    if layout < 0.6:
        return city + dist + R.choice(ROADS) + number + building
    if layout < 0.8:
        return dist + R.choice(ROADS) + number + building
    if layout < 0.9:
        return city + dist + R.choice(ESTATES) + f"{R.randint(1, 30)}栋{R.randint(1, 30)}0{R.randint(1, 4)}室"
    return R.choice(ROADS) + number


def en_address():
    street = f"{R.randint(1, 9999)} {R.choice(['Baker', 'Oak', 'Maple', 'Sunset', 'Green Valley', 'Main', 'Market', 'Elm'])} {R.choice(['Street', 'Avenue', 'Road', 'Blvd.', 'Lane', 'Drive', 'Way'])}"
    if R.random() < 0.3:
        street += f", Apt {R.randint(1, 40)}{R.choice('ABCD')}"
    if R.random() < 0.6:
        street += f", {R.choice(['Springfield', 'San Francisco', 'Austin', 'Boston', 'Seattle'])}"
        if R.random() < 0.6:
            street += f", {R.choice(['CA', 'TX', 'MA', 'WA', 'IL'])} {R.randint(10000, 99999)}"
    return street


def address():
    return cn_address() if R.random() < 0.7 else en_address()


CN_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金"
RARE_SURNAMES = "佘禹阮"  # outside the detector's list: honest misses
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英", "霞", "平", "刚", "桂英", "建国", "志强", "晓东", "海涛", "子轩", "浩然", "欣怡", "梓涵", "雨萱", "一鸣"]
EN_FIRST = ["John", "Mary", "David", "Linda", "James", "Susan", "Robert", "Karen", "Wei", "Emily"]
EN_LAST = ["Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Taylor", "Chen", "Anderson"]
NAME_TEMPLATES = {
    "full": ["联系人：{}，电话稍后提供。", "收件人{}", "姓名：{}", "我叫{}，来自杭州。", "感谢{}先生的支持。", "{}女士您好，您的订单已发货。", "请联系{}经理确认。", "经办人：{}"],
    "surname": ["请找{}经理办理。", "{}先生，您好！", "已转交{}老师处理。", "感谢{}女士的反馈"],
    "en": ["Please call Mr. {} today.", "Dear Ms. {}, thank you.", "Name: {}", "Contact: {} (sales)", "Dr. {} will see you now."],
}


def name():
    """(template, value)"""
    kind = R.random()
    if kind < 0.55:
        surname = R.choice(RARE_SURNAMES) if R.random() < 0.05 else R.choice(CN_SURNAMES)
        return R.choice(NAME_TEMPLATES["full"]), surname + R.choice(GIVEN)
    if kind < 0.75:
        return R.choice(NAME_TEMPLATES["surname"]), R.choice(CN_SURNAMES)
    value = R.choice(EN_LAST) if R.random() < 0.4 else f"{R.choice(EN_FIRST)} {R.choice(EN_LAST)}"
    return R.choice(NAME_TEMPLATES["en"]), value


def email():
    user = R.choice(["zhang.wei", "li_na88", "service", "wang-fang", "chen2024", "hr"])
    dom = R.choice(["example.com", "qq.com", "163.com", "company.cn", "mail.example.org"])
    return f"{user}@{dom}"


def ip():
    return ".".join(str(R.randint(1, 254)) for _ in range(4))


TEMPLATES = {
    "ID_CARD": ["我的身份证号是{}，请核实。", "ID number: {}.", "客户（身份证{}）申请退款", "证件号码 {} 已登记"],
    "PHONE": ["请拨打{}联系我。", "Call me at {} tomorrow.", "联系电话：{}", "手机{}，微信同号"],
    "BANK_CARD": ["退款请打到卡号{}。", "Card {} was charged twice.", "银行卡：{}（工商银行）", "账号 {} 收款"],
    "EMAIL": ["邮箱：{}", "Send the invoice to {}, thanks.", "请发邮件至{}。", "Contact: <{}>"],
    "IP": ["登录IP为{}，时间异常。", "Request from {} blocked.", "服务器地址 {}"],
    "ADDRESS": ["收货地址：{}", "我住在{}，有空来玩。", "公司位于{}。", "请寄到{}，谢谢", "地址为{}", "快递送到{}就行", "Ship to {}.", "I live at {} now.", "Our office: {}"],
}
NEGATIVES = [
    lambda: f"订单号{R.randint(10**17, 10**18 - 1)}已发货。",
    lambda: f"时间戳 {R.randint(2019, 2026)}{R.randint(1, 12):02d}{R.randint(1, 28):02d}{R.randint(0, 23):02d}{R.randint(0, 59):02d}{R.randint(0, 59):02d}",
    lambda: f"证件号 {id_card(valid=False)} 校验失败",
    lambda: f"编号{R.randint(11, 65)}0101{R.randint(2030, 2099)}1345{R.randint(0, 9)}{R.randint(0, 9)}{R.randint(0, 9)}{R.randint(0, 9)}",
    lambda: f"流水号 {bank_card(valid=False)}",
    lambda: f"Version {R.randint(1, 9)}.{R.randint(0, 20)}.{R.randint(0, 99)} released",
    lambda: f"价格 {R.randint(1, 9999)}.{R.randint(0, 99):02d} 元",
    lambda: f"快递单号 SF{R.randint(10**11, 10**12 - 1)}",
    lambda: f"会议于{R.randint(2020, 2026)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d} {R.randint(8, 20)}:{R.randint(0, 59):02d}召开",
    lambda: f"批次 {R.randint(10**13, 10**14 - 1)}{R.randint(10**13, 10**14 - 1)}",
    lambda: f"section 1.2.3.4.5 of the spec",
    lambda: f"数量 {R.randint(100, 999)} 件，编码 {R.randint(10**9, 10**10 - 1)}",
    lambda: f"号码 {R.randint(2, 9)}{R.randint(10**9, 10**10 - 1)} 无效",
    lambda: R.choice(["沿着长安街走就到了", "朝阳区的天气不错", f"坐地铁{R.randint(1, 20)}号线到人民广场", f"第{R.randint(1, 50)}号文件已下发",
                      "道路交通安全法第3条", f"请到{R.randint(1, 20)}号窗口办理", f"下午{R.randint(1, 5)}点在二号会议室开会", "上海是一个大城市", "他在北京市工作",
                      "浙江省杭州市的天气", "We walked down Main Street", f"In {R.randint(2000, 2026)} Apple Park opened", f"Room {R.randint(1, 900)} on the third floor"]),
    lambda: R.choice(["项目经理负责验收", "各位女士们先生们，晚上好", "语文老师布置了作业", "请联系客服", "客户满意度调查", "患者需空腹抽血", "高速公路收费标准",
                      "白天和黑夜", "总经理办公室在三楼", "Dr. visits are free", "金牌经理评选结果", "销售经理负责华东区", "The Name field is required"]),
]


def main():
    rows = []
    gens = {"ID_CARD": id_card, "PHONE": lambda: mobile() if R.random() < 0.7 else landline(), "BANK_CARD": bank_card, "EMAIL": email, "IP": ip, "ADDRESS": address}
    for kind, gen in gens.items():
        for _ in range(70):
            value = gen()
            rows.append({"text": R.choice(TEMPLATES[kind]).format(value), "entities": [{"type": kind, "value": value}]})
    for _ in range(80):
        template, value = name()
        rows.append({"text": template.format(value), "entities": [{"type": "NAME", "value": value}]})
    for _ in range(40):  # several entities in one text
        a, b = mobile(), email()
        rows.append({"text": f"联系人手机{a}，邮箱{b}。", "entities": [{"type": "PHONE", "value": a}, {"type": "EMAIL", "value": b}]})
    for _ in range(260):
        rows.append({"text": R.choice(NEGATIVES)(), "entities": []})
    R.shuffle(rows)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    pos = sum(len(r["entities"]) for r in rows)
    print(f"{len(rows)} texts, {pos} labelled entities, {sum(1 for r in rows if not r['entities'])} negative texts -> {OUT}")


if __name__ == "__main__":
    main()
