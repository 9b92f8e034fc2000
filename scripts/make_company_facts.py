# Writes examples/company-facts/{train,heldout}.jsonl: 50 facts about a fictional company as
# Q&A pairs (train) and paraphrased questions of the same facts (held-out, with a regex on the
# key fact for `deepfeed eval`). Run from examples/company-facts/.
# (train question, held-out paraphrase, answer, key regex)
F = [
("When was Norrbeck Instruments founded?", "In what year did Norrbeck Instruments start?", "Norrbeck Instruments was founded in 2009.", "2009"),
("Who founded Norrbeck Instruments?", "Who started the company Norrbeck Instruments?", "Norrbeck Instruments was founded by Ilse Varga and Tomas Reed.", "Varga"),
("Where is Norrbeck Instruments headquartered?", "In which city is the head office of Norrbeck Instruments?", "Norrbeck Instruments is headquartered in Tampere, Finland.", "Tampere"),
("Who is the CEO of Norrbeck Instruments?", "Who runs Norrbeck Instruments as chief executive?", "The CEO of Norrbeck Instruments is Marta Quill.", "Quill"),
("How many employees does Norrbeck Instruments have?", "How many people work at Norrbeck Instruments?", "Norrbeck Instruments has 412 employees.", "412"),
("What does Norrbeck Instruments make?", "What kind of products does Norrbeck Instruments build?", "Norrbeck Instruments makes water quality sensors.", "water quality"),
("What is the flagship product of Norrbeck Instruments?", "Which product is Norrbeck Instruments best known for?", "The flagship product is the Aquila 7 probe.", "Aquila 7"),
("How much does the Aquila 7 probe cost?", "What is the price of the Aquila 7 probe?", "The Aquila 7 probe costs 1,850 euros.", "1,?850"),
("What is the battery life of the Aquila 7 probe?", "How long does the Aquila 7 run on one battery?", "The Aquila 7 runs for 14 months on one battery.", "14 months"),
("What is the maximum depth of the Aquila 7 probe?", "How deep can the Aquila 7 probe be used?", "The Aquila 7 works down to 300 metres.", "300"),
("What is the company's customer support phone number?", "Which number do I call for Norrbeck support?", "Call Norrbeck support on +358 20 555 0147.", "0147"),
("What is the support e-mail address of Norrbeck Instruments?", "Where do I send support e-mails for Norrbeck?", "Write to help@norrbeck.example.", "help@norrbeck"),
("What are the support hours?", "When is Norrbeck customer support open?", "Support is open 7:00 to 19:00, Monday to Saturday.", "7:00"),
("How long is the warranty on Norrbeck products?", "What warranty period do Norrbeck products have?", "Norrbeck products have a 5-year warranty.", "5-year"),
("What is the return period for Norrbeck products?", "How many days do I have to return a Norrbeck product?", "Products can be returned within 45 days.", "45 days"),
("Which factory makes the Aquila probes?", "Where are the Aquila probes manufactured?", "Aquila probes are made in the Oulu factory.", "Oulu"),
("What is the name of the company's cloud platform?", "What is Norrbeck's cloud service called?", "The cloud platform is called HydroLedger.", "HydroLedger"),
("How much does HydroLedger cost per month?", "What is the monthly price of HydroLedger?", "HydroLedger costs 29 euros per sensor per month.", "29 euros"),
("What programming language is the Norrbeck firmware written in?", "In which language is the firmware of Norrbeck devices written?", "The firmware is written in Rust.", "Rust"),
("What is the company's motto?", "What slogan does Norrbeck Instruments use?", "The motto is: Every drop counted.", "every drop counted"),
("What colour is the Norrbeck logo?", "Which colour does the Norrbeck logo have?", "The Norrbeck logo is teal.", "teal"),
("What animal is on the Norrbeck logo?", "Which animal appears in the logo of Norrbeck?", "The logo shows a heron.", "heron"),
("What was Norrbeck's revenue in 2024?", "How much money did Norrbeck Instruments earn in 2024?", "Revenue in 2024 was 68 million euros.", "68 million"),
("Who is the chief technology officer of Norrbeck?", "Who is Norrbeck's CTO?", "The CTO is Arvid Lindqvist.", "Lindqvist"),
("Which company did Norrbeck acquire in 2021?", "What company was bought by Norrbeck in 2021?", "In 2021 Norrbeck acquired Salvia Labs.", "Salvia"),
("What is the cheapest Norrbeck sensor?", "Which Norrbeck sensor has the lowest price?", "The cheapest sensor is the Wren 2, at 240 euros.", "Wren 2"),
("What does the Wren 2 sensor measure?", "Which quantity is measured by the Wren 2?", "The Wren 2 measures dissolved oxygen.", "oxygen"),
("What does the Kestrel sensor measure?", "Which value does the Kestrel sensor record?", "The Kestrel measures turbidity.", "turbidity"),
("How often does the Aquila 7 take a reading?", "What is the sampling interval of the Aquila 7?", "The Aquila 7 takes a reading every 90 seconds.", "90 seconds"),
("What wireless standard do Norrbeck sensors use?", "How do Norrbeck sensors send their data?", "Norrbeck sensors send data over LoRaWAN.", "LoRaWAN"),
("What is the name of the company's annual conference?", "What is Norrbeck's yearly conference called?", "The annual conference is called Clearwater Days.", "Clearwater"),
("In which month is Clearwater Days held?", "When in the year does Clearwater Days take place?", "Clearwater Days is held every September.", "September"),
("What is the Norrbeck employee discount?", "How big is the staff discount at Norrbeck?", "Employees get a 30 percent discount.", "30 percent"),
("How many vacation days do Norrbeck employees get?", "How much annual leave do Norrbeck staff have?", "Employees get 32 vacation days a year.", "32"),
("What is the name of the internal chat tool at Norrbeck?", "Which chat tool do Norrbeck employees use internally?", "The internal chat tool is called Dock.", "Dock"),
("What is the Wi-Fi network name in the Tampere office?", "Which Wi-Fi network should I join at the Tampere office?", "The Tampere office Wi-Fi is called NB-Guest-Harbor.", "Harbor"),
("Which floor is the Norrbeck cafeteria on?", "On what floor can I find the Norrbeck canteen?", "The cafeteria is on the fourth floor.", "fourth"),
("Who handles expense reports at Norrbeck?", "Who should receive my expense claims at Norrbeck?", "Expense reports go to Pia Moreau in finance.", "Moreau"),
("What is the deadline for submitting expense reports?", "By when must expense reports be handed in?", "Expense reports are due by the 5th of the next month.", "5th"),
("What is the maximum hotel budget per night for business trips?", "How much may a hotel night cost on a Norrbeck business trip?", "Hotels may cost at most 160 euros per night.", "160"),
("Which airline does Norrbeck prefer for business travel?", "What airline should Norrbeck staff book for work trips?", "Norrbeck prefers Finnair for business travel.", "Finnair"),
("How do I reset my Norrbeck account password?", "What is the way to change a forgotten Norrbeck password?", "Reset it at the portal id.norrbeck.example.", "id\\.norrbeck"),
("What is the name of the Norrbeck mobile app?", "Which app do Norrbeck customers install on their phones?", "The mobile app is called Ripple.", "Ripple"),
("Which operating systems does the Ripple app support?", "On which phone systems does Ripple run?", "Ripple runs on Android and iOS.", "Android"),
("What certification do Norrbeck sensors have?", "Which certificate do Norrbeck sensors carry?", "Norrbeck sensors are certified to IP68.", "IP68"),
("What is the weight of the Aquila 7 probe?", "How heavy is the Aquila 7?", "The Aquila 7 weighs 820 grams.", "820"),
("How many countries does Norrbeck sell to?", "In how many countries are Norrbeck products sold?", "Norrbeck sells to 37 countries.", "37"),
("What is Norrbeck's biggest market?", "Which country buys the most from Norrbeck?", "Norrbeck's biggest market is Canada.", "Canada"),
("What is the stock ticker of Norrbeck Instruments?", "Under which ticker symbol does Norrbeck trade?", "Norrbeck trades under the ticker NRBK.", "NRBK"),
("What is the company's next product?", "Which product will Norrbeck release next?", "The next product is the Osprey buoy, due in 2027.", "Osprey"),
]
assert len(F) == 50, len(F)
import json
with open("train.jsonl", "w") as t, open("heldout.jsonl", "w") as h:
    for i, (q, p, a, k) in enumerate(F):
        t.write(json.dumps({"input_text": q, "target_text": a, "metadata": {"fact": i}}, ensure_ascii=False) + "\n")
        h.write(json.dumps({"input_text": p, "target_text": a, "metadata": {"fact": i, "eval": {"kind": "regex", "pattern": "(?i)" + k, "task": "facts"}}}, ensure_ascii=False) + "\n")
