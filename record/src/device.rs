//! The device summary of a user agent ("Firefox 120 on Linux", "Safari 17 on iPhone"), what a "your
//! devices" page shows next to each session.
//!
//! Parsed with woothee (a small, dependency-light port of a maintained cross-language dataset). The module
//! and the daemon both call this, so a session reads the same in `QSESS.BYUSER ... WITHMETA` and in the
//! mirror. A parse costs 1-3 µs, so both go through [`crate::cached_device_summary`], which caches it per
//! distinct user agent.

use std::borrow::Cow;

/// The longest summary kept; woothee's names are short, so this only bounds odd inputs.
pub const MAX_DEVICE_LEN: usize = 64;

const UNKNOWN: &str = woothee::woothee::VALUE_UNKNOWN;

/// The device summary of `user_agent`, or `None` when neither a browser nor an operating system is
/// recognised. Never panics: a parser failure is treated as "not recognised".
pub fn device_summary(user_agent: &[u8]) -> Option<String> {
    if user_agent.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(user_agent);
    std::panic::catch_unwind(|| summarise(&text)).ok().flatten()
}

fn summarise(user_agent: &str) -> Option<String> {
    let parsed = woothee::parser::Parser::new().parse(user_agent)?;
    let browser = known(parsed.name).map(|name| match known(parsed.version) {
        Some(version) if version.starts_with(|c: char| c.is_ascii_digit()) => {
            let major = version.split('.').next().unwrap_or(version);
            Cow::Owned(format!("{name} {major}"))
        }
        Some(version) => Cow::Owned(format!("{name} ({version})")),
        None => Cow::Borrowed(name),
    });
    let os = known(parsed.os).map(|os| if os == "Mac OSX" { "macOS" } else { os });
    let summary = match (browser, os) {
        (Some(browser), Some(os)) => format!("{browser} on {os}"),
        (Some(browser), None) => browser.into_owned(),
        (None, Some(os)) => os.to_owned(),
        (None, None) => return None,
    };
    Some(truncate(summary))
}

fn known(value: &str) -> Option<&str> {
    (!value.is_empty() && value != UNKNOWN).then_some(value)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_DEVICE_LEN {
        let mut end = MAX_DEVICE_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_common_browsers() {
        let cases: [(&str, Option<&str>); 8] = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", Some("Firefox 120 on Linux")),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                 Version/17.1 Mobile/15E148 Safari/604.1",
                Some("Safari 17 on iPhone"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/120.0.0.0 Safari/537.36",
                Some("Chrome 120 on Windows 10"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 \
                 Mobile Safari/537.36",
                Some("Chrome 120 on Android"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                 Version/17.1 Safari/605.1.15",
                Some("Safari 17 on macOS"),
            ),
            ("curl/8.4.0", Some("HTTP Library (curl)")),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Some("Googlebot")),
            ("uuuuuuuuuuuuuuuuuuuuuuuuuuuu", None),
        ];
        for (user_agent, expected) in cases {
            assert_eq!(device_summary(user_agent.as_bytes()).as_deref(), expected, "{user_agent}");
        }
    }

    #[test]
    fn odd_input_is_not_recognised_rather_than_a_failure() {
        assert_eq!(device_summary(b""), None);
        assert_eq!(device_summary(b"-"), None);
        assert_eq!(
            device_summary(b"\xff\xfe Firefox/\xff"),
            device_summary("\u{fffd}\u{fffd} Firefox/\u{fffd}".as_bytes())
        );
        let long = format!("Mozilla/5.0 (X11; Linux x86_64) Firefox/{}", "9".repeat(500));
        let summary = device_summary(long.as_bytes()).unwrap();
        assert!(summary.len() <= MAX_DEVICE_LEN, "{summary}");
    }

    #[test]
    fn truncation_respects_characters() {
        let text = "é".repeat(40);
        let truncated = truncate(text);
        assert_eq!(truncated.len(), MAX_DEVICE_LEN);
        assert!(truncated.chars().all(|c| c == 'é'));
    }
}
