//! Personal names found from their context (`<NAME>`), without a list of the names themselves:
//! - Chinese: a common surname and one or two given-name characters after a cue (姓名：,
//!   联系人, 收件人, 我叫 …), or a surname (+ given name) before a title (先生, 女士, 经理,
//!   老师 …): `联系人：张伟` → `联系人：<NAME>`, `请找王经理` → `请找<NAME>经理`;
//! - English: a capitalised name after `Mr.` / `Mrs.` / `Ms.` / `Dr.` / `Prof.` or a cue such as
//!   `Name:` / `Contact:`.
//!
//! Names not in such a context (a bare `张伟说`) are not found: that would need a tagger, and a
//! surname list alone flags every `高`, `白`, `方`. Users add their own names with a term list.
use std::sync::OnceLock;

use regex::Regex;

/// The most common single-character surnames (about 85 % of the population), without those that
/// are mostly function words (和, 向, 于 as in 由于 …).
const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤康易乔赖文施洪庞樊兰殷鲁岳齐童葛柳欧";
const COMPOUND_SURNAMES: &[&str] = &["欧阳", "司马", "诸葛", "上官", "东方", "慕容", "令狐", "皇甫", "尉迟", "公孙", "司徒", "夏侯"];
/// Characters that are never part of a name here (function words, verbs of the cue contexts).
const STOP: &str = "的了在和与跟给请找问叫是被由让对把将向从到说为也都就还又有无不之其这那各每位名个同及或等我你他她它们您";
/// A role word before a title is not a name: 项目经理, 销售经理, 班主任, 语文老师.
const ROLE_TAIL: &str = "理目门售品户堂语治科轻位班总副长级任务席职管工师部区店导牌";
/// Characters after which a lone surname before a title starts a word (感谢王先生, 拜访李老师).
const PRE_OK: &str = "谢称见访遇拜致找问请系交派叫";
/// After a two-character name from a cue, these start the next word, not a third name character.
const FOLLOWERS: &str = "电手邮地先女经老医主身联住性年男已说表来去要想今明昨的在和是于";

fn cue_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?:姓名|联系人|收件人|收货人|寄件人|经办人|负责人|申请人|签字人|客户|患者|我叫|名叫)\s*[:：]?\s*(\p{Han}{2,4})").expect("built-in name pattern")
    })
}

fn title_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(\p{Han}{1,3}?)(?:先生|女士|小姐|经理|老师|医生|主任|律师|教授|师傅|总监)").expect("built-in name pattern"))
}

fn english_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\b(?:(?:Mr|Mrs|Ms|Dr|Prof)\.?|Miss|(?:Name|Contact|Customer|Patient|Attn)\s*:)\s*([A-Z][a-z]+(?:[ -][A-Z][a-z]+){0,2})\b").expect("built-in name pattern")
    })
}

fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2A6DF)
}

/// Length in bytes of the surname `s` starts with.
fn surname_len(s: &str) -> Option<usize> {
    if let Some(c) = COMPOUND_SURNAMES.iter().find(|c| s.starts_with(*c)) {
        return Some(c.len());
    }
    let first = s.chars().next()?;
    SURNAMES.contains(first).then(|| first.len_utf8())
}

/// Byte spans of the names in `text`.
pub fn find(text: &str, out: &mut Vec<(usize, usize)>) {
    let has_han = !text.is_ascii();
    if has_han {
        for c in cue_re().captures_iter(text) {
            let m = c.get(1).unwrap();
            let Some(sl) = surname_len(m.as_str()) else { continue };
            // one or two given-name characters
            let mut end = m.start() + sl;
            for (k, ch) in text[end..m.end()].chars().enumerate() {
                if STOP.contains(ch) || (k == 1 && FOLLOWERS.contains(ch)) || k == 2 {
                    break;
                }
                end += ch.len_utf8();
            }
            if end > m.start() + sl {
                out.push((m.start(), end));
            }
        }
        for c in title_re().captures_iter(text) {
            let pre = c.get(1).unwrap();
            // the longest ending of the characters before the title that is surname + given name
            let starts: Vec<usize> = pre.as_str().char_indices().map(|(i, _)| pre.start() + i).collect();
            for &s in &starts {
                let cand = &text[s..pre.end()];
                let chars: Vec<char> = cand.chars().collect();
                let before = text[..s].chars().next_back();
                let ok = surname_len(cand).is_some_and(|sl| sl <= cand.len())
                    && !chars.iter().any(|&ch| STOP.contains(ch))
                    // 项目经理, 语文老师: a role word, not a name
                    && (chars.len() == 1 || !ROLE_TAIL.contains(chars[chars.len() - 1]))
                    // 谢王先生: more likely 谢 + 王先生 than a person called 谢王
                    && !(chars.len() == 2 && SURNAMES.contains(chars[1]) && !COMPOUND_SURNAMES.contains(&cand))
                    // 感谢潘娟先生: 谢 + 潘娟, not a person called 谢潘娟
                    && !(chars.len() == 3 && PRE_OK.contains(chars[0]) && SURNAMES.contains(chars[1]))
                    // a lone surname needs a word boundary before it (感谢王先生, not 语文老师)
                    && (chars.len() > 1 || before.is_none_or(|b| !is_han(b) || STOP.contains(b) || PRE_OK.contains(b)));
                if ok {
                    out.push((s, pre.end()));
                    break;
                }
            }
        }
    }
    if text.contains(['M', 'D', 'P', 'N', 'C', 'A']) {
        for c in english_re().captures_iter(text) {
            let m = c.get(1).unwrap();
            out.push((m.start(), m.end()));
        }
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
    fn names_from_context() {
        assert_eq!(spans("联系人：张伟，电话见下"), ["张伟"]);
        assert_eq!(spans("收件人李明华"), ["李明华"]);
        assert_eq!(spans("姓名：欧阳娜娜"), ["欧阳娜娜"]);
        assert_eq!(spans("联系人张伟电话"), ["张伟"]);
        assert_eq!(spans("请向王经理汇报"), ["王"]);
        assert_eq!(spans("感谢陈晓东先生的支持"), ["陈晓东"]);
        assert_eq!(spans("感谢王先生的帮助"), ["王"]);
        assert_eq!(spans("感谢潘娟先生的支持"), ["潘娟"]);
        assert_eq!(spans("已转交崔老师处理"), ["崔"]);
        assert_eq!(spans("Please call Mr. John Smith today"), ["John Smith"]);
        assert_eq!(spans("Name: Alice Wong"), ["Alice Wong"]);
        for neg in ["项目经理负责验收", "各位女士们先生们", "语文老师布置了作业", "高速公路收费", "The MRI scan", "请联系客服"] {
            assert!(spans(neg).is_empty(), "{neg}: {:?}", spans(neg));
        }
    }
}
