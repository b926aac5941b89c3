"""The small world the sample generator draws from: stores, flights, customers' origins, products.

Plain data, chosen to look like a Shanghai duty-free operator (airport, cruise-port and downtown
stores). Weights are relative frequencies, not probabilities.
"""

from __future__ import annotations

from typing import NamedTuple


class Store(NamedTuple):
    code: str
    receipt_prefix: str  # first block of the receipt id, e.g. PVG2-20260301-0004812
    name: str  # as staff write it in after-sales notes
    port: str  # departure port whose flights/sailings its customers take; "" = any (downtown)
    weight: float
    hours: tuple[int, int]  # opening hours, local time


STORES = (
    Store("PVG-T1-D", "PVG1", "浦东机场T1免税店", "PVG", 24, (6, 23)),
    Store("PVG-T2-D", "PVG2", "浦东机场T2免税店", "PVG", 34, (6, 24)),
    Store("SHA-T2-D", "SHA2", "虹桥机场T2免税店", "SHA", 12, (7, 22)),
    Store("WSK-CRUISE", "WSKC", "吴淞口邮轮港免税店", "WSK", 10, (8, 17)),
    Store("SH-CITY-HUAIHAI", "SHHH", "淮海路市内免税店", "", 20, (10, 22)),
)

# (flight or sailing number, departure port, destination IATA code). Sailings use the code of the
# nearest airport, as the cruise terminal's system does.
DEPARTURES = (
    ("MU523", "PVG", "NRT"),
    ("MU271", "PVG", "HND"),
    ("MU515", "PVG", "KIX"),
    ("MU5041", "PVG", "ICN"),
    ("KE894", "PVG", "ICN"),
    ("OZ362", "PVG", "ICN"),
    ("JL874", "PVG", "NRT"),
    ("NH920", "PVG", "HND"),
    ("CX367", "PVG", "HKG"),
    ("MU505", "PVG", "HKG"),
    ("NX109", "PVG", "MFM"),
    ("CI502", "PVG", "TPE"),
    ("BR721", "PVG", "TPE"),
    ("SQ833", "PVG", "SIN"),
    ("MU567", "PVG", "SIN"),
    ("TG665", "PVG", "BKK"),
    ("9C8517", "PVG", "BKK"),
    ("MH389", "PVG", "KUL"),
    ("VN523", "PVG", "SGN"),
    ("MU553", "PVG", "CDG"),
    ("AF111", "PVG", "CDG"),
    ("LH729", "PVG", "FRA"),
    ("MU219", "PVG", "FRA"),
    ("BA168", "PVG", "LHR"),
    ("MU551", "PVG", "LHR"),
    ("MU587", "PVG", "JFK"),
    ("UA858", "PVG", "SFO"),
    ("MU561", "PVG", "SYD"),
    ("QF130", "PVG", "SYD"),
    ("EK303", "PVG", "DXB"),
    ("QR871", "PVG", "DOH"),
    ("SU209", "PVG", "SVO"),
    ("AC26", "PVG", "YVR"),
    ("HO1373", "PVG", "DPS"),
    ("FM829", "PVG", "KIX"),
    ("9C6275", "PVG", "NGO"),
    ("MU575", "SHA", "HND"),
    ("NH968", "SHA", "HND"),
    ("JL82", "SHA", "HND"),
    ("MU5057", "SHA", "GMP"),
    ("KE2806", "SHA", "GMP"),
    ("MU725", "SHA", "HKG"),
    ("FM803", "SHA", "TPE"),
    ("ADM", "WSK", "FUK"),
    ("SPS", "WSK", "NGS"),
    ("MSP", "WSK", "CJU"),
)


class Origin(NamedTuple):
    nationality: str  # ISO 3166-1 alpha-3
    weight: float
    documents: tuple[tuple[str, float], ...]  # document type -> weight
    passport_shape: str  # L = letter, # = digit, C = consonant or digit (German passports)
    names: str  # how names are written: zh, ja, ko or latin


ORIGINS = (
    Origin("CHN", 62, (("身份证", 85), ("护照", 15)), "P########", "zh"),
    Origin("HKG", 4, (("港澳通行证", 1),), "", "zh"),
    Origin("MAC", 1, (("港澳通行证", 1),), "", "zh"),
    Origin("TWN", 3, (("台胞证", 1),), "", "zh"),
    Origin("JPN", 6, (("护照", 1),), "LL#######", "ja"),
    Origin("KOR", 6, (("护照", 1),), "M########", "ko"),
    Origin("USA", 3, (("护照", 1),), "#########", "latin"),
    Origin("GBR", 1.5, (("护照", 1),), "#########", "latin"),
    Origin("FRA", 1, (("护照", 1),), "##LL#####", "latin"),
    Origin("DEU", 1, (("护照", 1),), "CCCCCCCCC", "latin"),
    Origin("AUS", 1, (("护照", 1),), "LL#######", "latin"),
    Origin("CAN", 1, (("护照", 1),), "LL######", "latin"),
    Origin("SGP", 1.5, (("护照", 1),), "K#######L", "latin"),
    Origin("MYS", 1, (("护照", 1),), "A########", "latin"),
    Origin("THA", 1, (("护照", 1),), "LL#######", "latin"),
    Origin("RUS", 1, (("护照", 1),), "#########", "latin"),
    Origin("ITA", 0.5, (("护照", 1),), "LL#######", "latin"),
    Origin("NZL", 0.5, (("护照", 1),), "LL######", "latin"),
)

KOREAN_SURNAMES = ("KIM", "LEE", "PARK", "CHOI", "JUNG", "KANG", "CHO", "YOON", "JANG", "LIM")
KOREAN_GIVEN = ("MINJUN", "SEOYEON", "JIHOON", "HAEUN", "DOYUN", "JIWOO", "SEOJUN", "SUA", "HAJUN")

# Where members live: (province, city, district, GB/T 2260 code, postal code, roads).
RESIDENCES = (
    ("上海市", "上海市", "黄浦区", "310101", "200001", ("南京东路", "淮海中路", "西藏南路", "复兴中路")),
    ("上海市", "上海市", "徐汇区", "310104", "200030", ("漕溪北路", "肇嘉浜路", "天钥桥路", "虹桥路")),
    ("上海市", "上海市", "长宁区", "310105", "200050", ("天山路", "仙霞路", "延安西路", "古北路")),
    ("上海市", "上海市", "静安区", "310106", "200040", ("南京西路", "延安中路", "江宁路", "共和新路")),
    ("上海市", "上海市", "普陀区", "310107", "200333", ("长寿路", "中山北路", "曹杨路", "真北路")),
    ("上海市", "上海市", "虹口区", "310109", "200080", ("四川北路", "曲阳路", "大连路")),
    ("上海市", "上海市", "杨浦区", "310110", "200082", ("四平路", "国定路", "控江路", "黄兴路")),
    ("上海市", "上海市", "闵行区", "310112", "201100", ("七莘路", "莘松路", "沪闵路", "都市路")),
    ("上海市", "上海市", "宝山区", "310113", "201900", ("牡丹江路", "友谊路", "淞宝路")),
    ("上海市", "上海市", "嘉定区", "310114", "201800", ("塔城路", "博乐路", "城中路")),
    ("上海市", "上海市", "浦东新区", "310115", "200120", ("张杨路", "世纪大道", "东方路", "锦绣路", "花木路")),
    ("上海市", "上海市", "松江区", "310117", "201600", ("人民北路", "荣乐中路", "文诚路")),
    ("上海市", "上海市", "青浦区", "310118", "201700", ("公园路", "城中北路", "华青路")),
    ("北京市", "北京市", "朝阳区", "110105", "100020", ("建国路", "朝阳路", "东三环中路")),
    ("北京市", "北京市", "海淀区", "110108", "100080", ("中关村大街", "学院路", "知春路")),
    ("江苏省", "南京市", "鼓楼区", "320106", "210009", ("中山北路", "湖南路", "北京西路")),
    ("江苏省", "苏州市", "姑苏区", "320508", "215000", ("人民路", "干将路", "十全街")),
    ("浙江省", "杭州市", "西湖区", "330106", "310013", ("文三路", "天目山路", "曙光路")),
    ("浙江省", "宁波市", "鄞州区", "330212", "315100", ("天童南路", "四明中路", "钱湖北路")),
    ("广东省", "广州市", "天河区", "440106", "510620", ("天河路", "体育西路", "珠江新城花城大道")),
    ("广东省", "深圳市", "南山区", "440305", "518052", ("深南大道", "南海大道", "科苑路")),
    ("四川省", "成都市", "武侯区", "510107", "610041", ("人民南路", "科华北路", "武侯祠大街")),
    ("湖北省", "武汉市", "武昌区", "420106", "430061", ("中山路", "中北路", "武珞路")),
    ("安徽省", "合肥市", "蜀山区", "340104", "230031", ("长江西路", "黄山路", "望江西路")),
    ("山东省", "青岛市", "市南区", "370202", "266001", ("香港中路", "中山路", "东海西路")),
    ("福建省", "厦门市", "思明区", "350203", "361001", ("中山路", "湖滨南路", "嘉禾路")),
)
RESIDENCE_WEIGHTS = (5, 5, 4, 4, 4, 3, 4, 6, 3, 3, 9, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1)

# Where resident ID numbers were issued: GB/T 2260 province prefix -> weight.
ID_PROVINCES = {
    "31": 30,
    "32": 13,
    "33": 12,
    "34": 6,
    "36": 3,
    "37": 4,
    "41": 4,
    "42": 3,
    "43": 3,
    "44": 4,
    "35": 3,
    "51": 3,
    "11": 3,
    "12": 1,
    "13": 2,
    "21": 2,
    "23": 1,
    "50": 2,
    "61": 1,
}

# Mainland mobile prefixes (first three digits) in use.
MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "147",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "173",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "184",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)

EMAIL_DOMAINS = (
    ("qq.com", 35),
    ("163.com", 25),
    ("126.com", 8),
    ("sina.com", 4),
    ("gmail.com", 12),
    ("outlook.com", 8),
    ("hotmail.com", 5),
    ("yahoo.co.jp", 3),
)

# (brand, product name, category, price in CNY). SKUs are EAN-13 built from the row number.
PRODUCTS = (
    ("LANCOME", "兰蔻小黑瓶精华 50ml", "香化", 980),
    ("LANCOME", "兰蔻菁纯面霜 60ml", "香化", 2880),
    ("ESTEE LAUDER", "雅诗兰黛小棕瓶精华 100ml", "香化", 1150),
    ("SK-II", "SK-II神仙水 230ml", "香化", 1370),
    ("LA MER", "海蓝之谜精华面霜 60ml", "香化", 2950),
    ("SHISEIDO", "资生堂红腰子精华 75ml", "香化", 890),
    ("DIOR", "迪奥烈艳蓝金唇膏 999", "香化", 350),
    ("CHANEL", "香奈儿五号香水 100ml", "香化", 1580),
    ("YSL", "圣罗兰黑鸦片香水 90ml", "香化", 1190),
    ("CLINIQUE", "倩碧黄油 125ml", "香化", 310),
    ("GUERLAIN", "娇兰帝皇蜂姿精华 50ml", "香化", 1260),
    ("SULWHASOO", "雪花秀滋盈肌本润颜精华 90ml", "香化", 960),
    ("MOUTAI", "贵州茅台飞天53度 500ml", "烟酒", 2699),
    ("WULIANGYE", "五粮液52度 500ml", "烟酒", 1099),
    ("HENNESSY", "轩尼诗XO干邑 700ml", "烟酒", 1680),
    ("JOHNNIE WALKER", "尊尼获加蓝牌 1L", "烟酒", 1580),
    ("CHUNGHWA", "中华(硬)香烟 条", "烟酒", 450),
    ("MARLBORO", "万宝路香烟 条", "烟酒", 260),
    ("GLENFIDDICH", "格兰菲迪18年 700ml", "烟酒", 820),
    ("GUCCI", "古驰马衔扣手提包", "精品", 18900),
    ("COACH", "蔻驰托特包", "精品", 2980),
    ("MONTBLANC", "万宝龙大班钢笔", "精品", 5200),
    ("TISSOT", "天梭力洛克机械表", "精品", 4950),
    ("SWAROVSKI", "施华洛世奇天鹅项链", "精品", 1190),
    ("BURBERRY", "博柏利经典格纹围巾", "精品", 3950),
    ("RAY-BAN", "雷朋飞行员太阳镜", "精品", 1290),
    ("PANDORA", "潘多拉串珠手链", "精品", 880),
    ("GODIVA", "歌帝梵巧克力礼盒 24粒", "食品", 398),
    ("ROYCE", "Royce生巧克力 抹茶", "食品", 168),
    ("TOBLERONE", "瑞士三角巧克力 360g", "食品", 89),
    ("WHITE RABBIT", "大白兔奶糖礼盒", "食品", 58),
    ("FERRERO", "费列罗榛果巧克力 30粒", "食品", 199),
    ("APPLE", "AirPods Pro 第二代", "电子", 1799),
    ("SONY", "索尼WH-1000XM5耳机", "电子", 2499),
    ("DYSON", "戴森Supersonic吹风机", "电子", 2990),
    ("DJI", "大疆Osmo Pocket 3", "电子", 3499),
    ("NINTENDO", "任天堂Switch OLED", "电子", 2299),
)
CATEGORY_WEIGHTS = {"香化": 46, "烟酒": 22, "精品": 12, "食品": 12, "电子": 8}

# Payment methods by customer group (mainland vs. visitor); cards get a card number.
PAYMENTS_MAINLAND = (("支付宝", 30), ("微信支付", 30), ("银联", 30), ("现金", 5), ("VISA", 3), ("MASTERCARD", 2))
PAYMENTS_VISITOR = (("VISA", 38), ("MASTERCARD", 27), ("银联", 8), ("现金", 15), ("支付宝", 12))
CARD_PREFIXES = {
    "银联": ("622202", "622848", "621700", "622588", "621483"),
    "VISA": ("411111", "453201", "476173", "402400"),
    "MASTERCARD": ("510510", "522178", "545454", "555555"),
}

TIERS = (("普卡", 55), ("银卡", 25), ("金卡", 12), ("白金卡", 6), ("黑金卡", 2))
CHANNELS = (("电话", 35), ("微信", 35), ("门店", 20), ("邮件", 10))
CASE_TYPES = (("退货", 30), ("换货", 15), ("投诉", 20), ("咨询", 25), ("发票", 10))
