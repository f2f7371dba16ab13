//! Transcript processing of the reference `examples/generation.py` `main()`, in its order:
//! speaker tags from the raw text, `normalize_chinese_punctuation`, parentheses and degree signs,
//! sound-event tags, whitespace per line (blank lines dropped), strip, final punctuation.
//!
//! Python string semantics are reproduced exactly: `str.split()` / `str.strip()` use Python's
//! whitespace set (Rust's `char::is_whitespace` plus U+001C..U+001F), and `\d` in the speaker-tag
//! regex is Unicode `Nd` as in Python 3's `re`.

use regex::Regex;
use std::sync::OnceLock;

/// Python's `str.isspace()` for one character: Unicode `White_Space` plus the four ASCII
/// information separators U+001C..U+001F that Python also treats as whitespace.
pub fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.strip()` (no argument).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_whitespace)
}

/// Python's `s.split()` (no argument): runs of whitespace separate, no empty pieces.
pub fn py_split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_whitespace).filter(|w| !w.is_empty())
}

fn speaker_tag_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // A constant pattern: it compiles or the crate's unit tests fail.
        #[allow(clippy::unwrap_used)]
        Regex::new(r"\[(SPEAKER\d+)\]").unwrap()
    })
}

/// `sorted(set(re.findall(r"\[(SPEAKER\d+)\]", transcript)))`: the distinct speaker tags of the
/// RAW transcript (before normalisation), sorted as strings, so `SPEAKER10` sorts before
/// `SPEAKER2`. Rust's `String` order is code-point order, the same as Python's.
pub fn speaker_tags(raw_transcript: &str) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = speaker_tag_regex()
        .captures_iter(raw_transcript)
        .filter_map(|c| c.get(1).map(|m| m.as_str().to_string()))
        .collect();
    set.into_iter().collect()
}

/// The reference's `chinese_to_english_punct` table, in its (dict) order.
pub const CHINESE_PUNCTUATION: [(char, &str); 24] = [
    ('，', ", "),
    ('。', "."),
    ('：', ":"),
    ('；', ";"),
    ('？', "?"),
    ('！', "!"),
    ('（', "("),
    ('）', ")"),
    ('【', "["),
    ('】', "]"),
    ('《', "<"),
    ('》', ">"),
    ('\u{201c}', "\""),
    ('\u{201d}', "\""),
    ('\u{2018}', "'"),
    ('\u{2019}', "'"),
    ('、', ","),
    ('—', "-"),
    ('…', "..."),
    ('·', "."),
    ('「', "\""),
    ('」', "\""),
    ('『', "\""),
    ('』', "\""),
];

/// `normalize_chinese_punctuation`: full-width punctuation to ASCII (`，` becomes `", "`, comma
/// AND space). The reference applies `str.replace` once per table entry; every source is one
/// non-ASCII character and every replacement is ASCII, so one pass over the characters gives the
/// same result.
pub fn normalize_chinese_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match CHINESE_PUNCTUATION.iter().find(|(zh, _)| *zh == c) {
            Some((_, en)) => out.push_str(en),
            None => out.push(c),
        }
    }
    out
}

/// Sound-event tags and their replacements, applied in this order with `str.replace` (so
/// `[music start]` is handled before `[music]`). As in the reference at commit f04f5df.
pub const SOUND_EVENT_TAGS: [(&str, &str); 11] = [
    ("[laugh]", "<SE>[Laughter]</SE>"),
    ("[humming start]", "<SE_s>[Humming]</SE_s>"),
    ("[humming end]", "<SE_e>[Humming]</SE_e>"),
    ("[music start]", "<SE_s>[Music]</SE_s>"),
    ("[music end]", "<SE_e>[Music]</SE_e>"),
    ("[music]", "<SE>[Music]</SE>"),
    ("[sing start]", "<SE_s>[Singing]</SE_s>"),
    ("[sing end]", "<SE_e>[Singing]</SE_e>"),
    ("[applause]", "<SE>[Applause]</SE>"),
    ("[cheering]", "<SE>[Cheering]</SE>"),
    ("[cough]", "<SE>[Cough]</SE>"),
];

/// Endings that suppress the final `.`.
pub const FINAL_ENDINGS: [&str; 9] = [".", "!", "?", ",", ";", "\"", "'", "</SE_e>", "</SE>"];

/// The transcript normalisation of `main()` (steps after the speaker-tag collection):
/// 1. [`normalize_chinese_punctuation`];
/// 2. `(` and `)` each become a space; `°F` → ` degrees Fahrenheit`, `°C` → ` degrees Celsius`;
/// 3. [`SOUND_EVENT_TAGS`] in order;
/// 4. split on `\n`, drop lines that are blank after `strip()`, collapse each line's whitespace
///    runs to one space (`" ".join(line.split())`), join with `\n` (no blank line survives);
/// 5. `strip()`;
/// 6. append `.` unless the text ends with one of [`FINAL_ENDINGS`] (an empty transcript
///    becomes `"."`, as in the reference).
pub fn normalize_transcript(transcript: &str) -> String {
    let mut text = normalize_chinese_punctuation(transcript);
    text = text.replace(['(', ')'], " ");
    text = text
        .replace("°F", " degrees Fahrenheit")
        .replace("°C", " degrees Celsius");
    for (tag, replacement) in SOUND_EVENT_TAGS {
        text = text.replace(tag, replacement);
    }
    let lines: Vec<String> = text
        .split('\n')
        .filter(|line| !py_strip(line).is_empty())
        .map(|line| py_split_whitespace(line).collect::<Vec<_>>().join(" "))
        .collect();
    let mut text = py_strip(&lines.join("\n")).to_string();
    if !FINAL_ENDINGS.iter().any(|end| text.ends_with(end)) {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_information_separators() {
        assert!(is_py_whitespace('\u{1f}'));
        assert!(is_py_whitespace('\u{3000}'));
        assert!(is_py_whitespace('\u{85}'));
        assert!(!is_py_whitespace('\u{200b}')); // zero-width space is not whitespace in Python
        assert_eq!(py_strip("\u{1c} a b\u{a0}"), "a b");
    }
}
