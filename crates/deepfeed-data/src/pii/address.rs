//! Postal addresses (`<ADDRESS>`): Chinese addresses built from administrative levels
//! (province / city / district / town), a road or street, a house number and building parts
//! (栋, 单元, 室 …), and common English street addresses (`1600 Amphitheatre Parkway, Mountain
//! View, CA 94043`, `221B Baker Street`).
//!
//! Chinese text has no spaces, so a regex anchored on the suffixes (市, 区, 路, 号 …) also takes
//! the words before the first level (`我住在北京市…`); the start is then moved to a province
//! name or past the last cue (住在, 位于, 地址：…). A match must hold a road with a number or
//! two levels at least, so `沿着长安街走`, `朝阳区的天气` or `3号线` are not addresses.
use std::sync::OnceLock;

use regex::Regex;

const PROVINCES: &[&str] = &[
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东",
    "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门",
];

/// Words after which an address starts (longest first where they share a suffix).
const CUES: &[&str] = &[
    "收货地址", "家庭住址", "通讯地址", "联系地址", "详细地址", "地址是", "地址为", "地址", "住址", "住在", "位于", "寄到", "送到", "发到", "搬到", "寄往",
    "来自", "地处", "前往", "在", "到", "至", "于", "往", "是", "为", "：", ":",
];

fn cn_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let num = r"(?:[0-9]{1,5}|[一二三四五六七八九十百]{1,4})";
        let p = format!(
            r"(?x)
            (?P<prov>\p{{Han}}{{2,3}}(?:省|自治区|特别行政区))?
            (?P<city>\p{{Han}}{{1,6}}?(?:市|自治州|地区|盟))?
            (?P<dist>\p{{Han}}{{1,6}}?(?:区|县|旗))?
            (?P<town>\p{{Han}}{{1,6}}?(?:街道|镇|乡))?
            (?P<road>\p{{Han}}{{1,8}}?(?:大道|大街|路|街|巷|胡同))?
            (?P<num>(?:{num}(?:-{num})?(?:弄|号))+)?
            (?P<estate>\p{{Han}}{{2,8}}?(?:小区|花园|大厦|公寓|新村|家园|广场|中心|苑))?
            (?P<bld>(?:{num}(?:号楼|栋|幢|座|单元|楼|层|室|号)|[A-Z]座|楼)+)?"
        );
        Regex::new(&p).expect("built-in address pattern")
    })
}

fn en_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"\d{1,5}[A-Z]?(?: [A-Z][a-z]+){1,3} (?:Street|St\.|Avenue|Ave\.|Road|Rd\.|Boulevard|Blvd\.|Lane|Ln\.|Drive|Dr\.|Court|Ct\.|Way|Place|Pl\.|Parkway|Terrace|Highway)(?:,? (?:Apt\.?|Suite|Unit|#) ?[0-9A-Z]+)?(?:, [A-Z][a-z]+(?: [A-Z][a-z]+){0,2})?(?:, [A-Z]{2} \d{5}(?:-\d{4})?)?",
        )
        .expect("built-in address pattern")
    })
}

/// Byte spans of the addresses in `text`, in order, non-overlapping.
pub fn find(text: &str, out: &mut Vec<(usize, usize)>) {
    // cheap pre-checks: every Chinese address has one of these characters, every English one a
    // digit followed later by a capitalised word
    if text.contains(['路', '街', '巷', '号', '弄', '室', '栋', '道', '同']) {
        find_cn(text, out);
    }
    if text.bytes().any(|b| b.is_ascii_digit()) {
        let b = text.as_bytes();
        for m in en_re().find_iter(text) {
            // not the end of a longer number or word (after a Chinese character is fine: 寄到221B …)
            if m.start() == 0 || !b[m.start() - 1].is_ascii_alphanumeric() {
                out.push((m.start(), m.end()));
            }
        }
    }
}

fn find_cn(text: &str, out: &mut Vec<(usize, usize)>) {
    for c in cn_re().captures_iter(text) {
        let whole = c.get(0).unwrap();
        if whole.is_empty() {
            continue;
        }
        let has = |n: &str| c.name(n).is_some();
        let levels = ["prov", "city", "dist", "town"].iter().filter(|n| has(n)).count();
        let numbered = has("num") || has("bld");
        let ok = (has("road") && (numbered || levels >= 1)) || (levels >= 2 && (numbered || has("estate"))) || (has("estate") && has("bld") && levels + has("road") as usize >= 1);
        if !ok {
            continue;
        }
        // the first component's text (up to its suffix) may start with words that are not part of it
        let first_end = ["prov", "city", "dist", "town", "road", "estate"].iter().find_map(|n| c.name(n)).map_or(whole.end(), |m| m.end());
        let head = &text[whole.start()..first_end];
        let mut start = whole.start();
        if let Some(i) = PROVINCES.iter().filter_map(|p| head.find(p)).min() {
            start += i;
        } else if let Some(i) = CUES.iter().filter_map(|cue| head.rfind(cue).map(|i| i + cue.len())).max() {
            // keep the cue's cut only if a name of two characters or more is left before the suffix
            if head[i..].chars().count() >= 3 {
                start += i;
            }
        }
        // an address does not end on a bare "号" of a metro line or document (3号线, 5号文件)
        let end = whole.end();
        let rest = &text[end..];
        if !has("road") && levels < 2 && (rest.starts_with('线') || rest.starts_with('文')) {
            continue;
        }
        out.push((start, end));
    }
}

#[cfg(test)]
mod tests {
    fn spans(t: &str) -> Vec<&str> {
        let mut v = vec![];
        super::find(t, &mut v);
        v.into_iter().map(|(s, e)| &t[s..e]).collect()
    }

    #[test]
    fn chinese_and_english_addresses() {
        assert_eq!(spans("我住在北京市朝阳区建国路88号，欢迎来玩"), ["北京市朝阳区建国路88号"]);
        assert_eq!(spans("收货地址：广东省深圳市南山区科技园路3号5栋2单元501室"), ["广东省深圳市南山区科技园路3号5栋2单元501室"]);
        assert_eq!(spans("公司位于杭州市西湖区文三路90弄12号。"), ["杭州市西湖区文三路90弄12号"]);
        assert_eq!(spans("Ship it to 221B Baker Street, London please"), ["221B Baker Street, London"]);
        assert_eq!(spans("请寄到2467 Baker Road, Springfield, IL 47331，谢谢"), ["2467 Baker Road, Springfield, IL 47331"]);
        assert_eq!(spans("地址为成都市武侯区滨江大道132弄5号14号楼2604室"), ["成都市武侯区滨江大道132弄5号14号楼2604室"]);
        assert_eq!(spans("Office: 1600 Amphitheatre Parkway, Mountain View, CA 94043."), ["1600 Amphitheatre Parkway, Mountain View, CA 94043"]);
        for neg in ["沿着长安街走就到了", "朝阳区的天气不错", "坐地铁3号线", "第5号文件已下发", "道路交通安全法", "Chapter 3 covers road safety"] {
            assert!(spans(neg).is_empty(), "{neg}: {:?}", spans(neg));
        }
    }
}
