#!/usr/bin/env python3
"""Writes crates/deepfeed-data/tests/fixtures/pii_testset.jsonl: a labelled, seeded test set for the
de-identifier. Each line: {"text": ..., "entities": [{"type": T, "value": V}, ...]}.

Positives: valid mainland ID numbers (checksum), mobile and landline phones in common layouts,
bank cards (Luhn), e-mails and IPv4 addresses inside Chinese and English sentences.
Hard negatives (labelled with no entity): order numbers and timestamps of the same length, IDs with
a wrong checksum or impossible birth date, card-like numbers failing Luhn, version strings,
prices, dates, tracking numbers, numbers glued to longer digit runs.

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
    area = R.choice(["010", "021", "0755", "020", "0571", "028"])
    num = f"{R.randint(2000000, 99999999)}" if len(area) == 3 else f"{R.randint(2000000, 9999999)}"
    return R.choice([f"{area}-{num}", f"({area}){num}", f"{area}-{num}"])


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
]


def main():
    rows = []
    gens = {"ID_CARD": id_card, "PHONE": lambda: mobile() if R.random() < 0.7 else landline(), "BANK_CARD": bank_card, "EMAIL": email, "IP": ip}
    for kind, gen in gens.items():
        for _ in range(70):
            value = gen()
            rows.append({"text": R.choice(TEMPLATES[kind]).format(value), "entities": [{"type": kind, "value": value}]})
    for _ in range(40):  # several entities in one text
        a, b = mobile(), email()
        rows.append({"text": f"联系人手机{a}，邮箱{b}。", "entities": [{"type": "PHONE", "value": a}, {"type": "EMAIL", "value": b}]})
    for _ in range(200):
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
