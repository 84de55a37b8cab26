//! Parsing the options of `QSESS.SET` and `QSESS.NEW` into a typed value, before anything is touched.

use crate::client_ip;
use crate::error::CommandError;
use crate::limits::{MAX_SESSIONS_PER_USER_LIMIT, MAX_TIMEOUT_MS, MAX_USER_AGENT_BYTES, MAX_USER_ID_BYTES};
use std::net::IpAddr;

/// Who owns the session after the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner<'a> {
    User(&'a [u8]),
    Anonymous,
}

/// `NX` (only create) or `XX` (only update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    OnlyCreate,
    OnlyUpdate,
}

/// The options of one `QSESS.SET`/`QSESS.NEW`; `None` means "keep the current value" (or the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionOptions<'a> {
    pub(crate) data: Option<&'a [u8]>,
    pub(crate) owner: Option<Owner<'a>>,
    pub(crate) ip: Option<IpAddr>,
    /// `Some(b"")` clears the stored user agent.
    pub(crate) user_agent: Option<&'a [u8]>,
    pub(crate) idle_ms: Option<u64>,
    pub(crate) absolute_ms: Option<u64>,
    pub(crate) condition: Option<Condition>,
    pub(crate) limit: Option<u64>,
}

/// Which command the options belong to: `QSESS.NEW` has no `NX`/`XX`, since it always creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptionsFor {
    Set,
    New,
}

impl OptionsFor {
    fn command(self) -> &'static str {
        match self {
            OptionsFor::Set => "QSESS.SET",
            OptionsFor::New => "QSESS.NEW",
        }
    }

    fn accepted(self) -> &'static str {
        match self {
            OptionsFor::Set => "DATA, USER, ANON, IP, UA, IDLE, ABSOLUTE, NX, XX, LIMIT",
            OptionsFor::New => "DATA, USER, ANON, IP, UA, IDLE, ABSOLUTE, LIMIT",
        }
    }
}

pub(crate) fn parse<'a>(
    arguments: &[&'a [u8]],
    options_for: OptionsFor,
    max_data_bytes: u64,
) -> Result<SessionOptions<'a>, CommandError> {
    let mut options = SessionOptions::default();
    let mut remaining = arguments.iter().copied();
    while let Some(keyword) = remaining.next() {
        let mut value_of = |name: &'static str| remaining.next().ok_or(CommandError::MissingValue(name));
        match keyword.to_ascii_uppercase().as_slice() {
            b"DATA" => {
                let data = value_of("DATA")?;
                if data.len() as u64 > max_data_bytes {
                    return Err(CommandError::DataTooLarge { size: data.len(), max: max_data_bytes });
                }
                set_once(&mut options.data, data, "DATA")?;
            }
            b"USER" => {
                let user_id = value_of("USER")?;
                validate_user_id(user_id)?;
                if options.owner.is_some() {
                    return Err(repeated_owner(options.owner, "USER"));
                }
                options.owner = Some(Owner::User(user_id));
            }
            b"ANON" => {
                if options.owner.is_some() {
                    return Err(repeated_owner(options.owner, "ANON"));
                }
                options.owner = Some(Owner::Anonymous);
            }
            b"IP" => {
                let address = client_ip::parse(value_of("IP")?)?;
                set_once(&mut options.ip, address, "IP")?;
            }
            b"UA" => {
                let user_agent = value_of("UA")?;
                if user_agent.len() > MAX_USER_AGENT_BYTES {
                    return Err(CommandError::UserAgentTooLong(user_agent.len()));
                }
                set_once(&mut options.user_agent, user_agent, "UA")?;
            }
            b"IDLE" => {
                let idle_ms = parse_integer(value_of("IDLE")?, "IDLE (ms)", 0, MAX_TIMEOUT_MS)?;
                set_once(&mut options.idle_ms, idle_ms, "IDLE")?;
            }
            b"ABSOLUTE" => {
                let absolute_ms = parse_integer(value_of("ABSOLUTE")?, "ABSOLUTE (ms)", 0, MAX_TIMEOUT_MS)?;
                set_once(&mut options.absolute_ms, absolute_ms, "ABSOLUTE")?;
            }
            b"LIMIT" => {
                let limit = parse_integer(value_of("LIMIT")?, "LIMIT", 1, MAX_SESSIONS_PER_USER_LIMIT)?;
                set_once(&mut options.limit, limit, "LIMIT")?;
            }
            b"NX" | b"XX" if options_for == OptionsFor::Set => {
                let (condition, name) = if keyword.eq_ignore_ascii_case(b"NX") {
                    (Condition::OnlyCreate, "NX")
                } else {
                    (Condition::OnlyUpdate, "XX")
                };
                match options.condition {
                    None => options.condition = Some(condition),
                    Some(existing) if existing == condition => return Err(CommandError::RepeatedOption(name)),
                    Some(_) => return Err(CommandError::ConflictingOptions("NX", "XX")),
                }
            }
            _ => {
                return Err(CommandError::UnknownOption {
                    command: options_for.command(),
                    accepted: options_for.accepted(),
                })
            }
        }
    }
    if options.limit.is_some() && options.owner == Some(Owner::Anonymous) {
        return Err(CommandError::LimitWithoutUser);
    }
    Ok(options)
}

pub(crate) fn validate_user_id(user_id: &[u8]) -> Result<(), CommandError> {
    if user_id.is_empty() {
        return Err(CommandError::EmptyUserId);
    }
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(CommandError::UserIdTooLong(user_id.len()));
    }
    Ok(())
}

/// Parses a non-negative decimal integer within bounds, naming the argument in the error.
pub(crate) fn parse_integer(text: &[u8], what: &'static str, min: u64, max: u64) -> Result<u64, CommandError> {
    std::str::from_utf8(text)
        .ok()
        .filter(|text| !text.starts_with('+'))
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|number| (min..=max).contains(number))
        .ok_or(CommandError::BadInteger { what, min, max })
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(CommandError::RepeatedOption(name));
    }
    *slot = Some(value);
    Ok(())
}

fn repeated_owner(existing: Option<Owner<'_>>, given: &'static str) -> CommandError {
    match (existing, given) {
        (Some(Owner::User(_)), "USER") => CommandError::RepeatedOption("USER"),
        (Some(Owner::Anonymous), "ANON") => CommandError::RepeatedOption("ANON"),
        _ => CommandError::ConflictingOptions("USER", "ANON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_set(words: &[&str]) -> Result<SessionOptions<'static>, CommandError> {
        let words: Vec<&'static [u8]> =
            words.iter().map(|word| &*Box::leak(word.as_bytes().to_vec().into_boxed_slice())).collect();
        parse(&words, OptionsFor::Set, 100)
    }

    #[test]
    fn parses_every_option_case_insensitively() {
        let options = parse_set(&[
            "data",
            "x",
            "USER",
            "42",
            "Ip",
            "::ffff:10.0.0.1",
            "UA",
            "curl",
            "IDLE",
            "1000",
            "ABSOLUTE",
            "0",
            "xx",
            "LIMIT",
            "3",
        ])
        .unwrap();
        assert_eq!(options.data, Some(&b"x"[..]));
        assert_eq!(options.owner, Some(Owner::User(b"42")));
        assert_eq!(options.ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(options.user_agent, Some(&b"curl"[..]));
        assert_eq!((options.idle_ms, options.absolute_ms), (Some(1000), Some(0)));
        assert_eq!(options.condition, Some(Condition::OnlyUpdate));
        assert_eq!(options.limit, Some(3));
        assert_eq!(parse_set(&[]).unwrap(), SessionOptions::default());
        assert_eq!(parse_set(&["ANON"]).unwrap().owner, Some(Owner::Anonymous));
    }

    #[test]
    fn refuses_bad_input_with_precise_errors() {
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["DATA"], "option DATA needs a value"),
            (vec!["DATA", "a", "DATA", "b"], "option DATA given more than once"),
            (vec!["NX", "XX"], "NX and XX cannot be used together"),
            (vec!["NX", "NX"], "option NX given more than once"),
            (vec!["USER", "1", "ANON"], "USER and ANON cannot be used together"),
            (vec!["USER", ""], "user id must not be empty"),
            (
                vec!["IP", "300.1.1.1"],
                "invalid IP address; accepted: an IPv4 or IPv6 address such as 203.0.113.7 or 2001:db8::1",
            ),
            (vec!["IDLE", "-5"], "IDLE (ms) must be an integer from 0 to 316224000000"),
            (vec!["IDLE", "1.5"], "IDLE (ms) must be an integer from 0 to 316224000000"),
            (vec!["ABSOLUTE", "abc"], "ABSOLUTE (ms) must be an integer from 0 to 316224000000"),
            (vec!["LIMIT", "0"], "LIMIT must be an integer from 1 to 1000000"),
            (vec!["ANON", "LIMIT", "2"], "LIMIT needs an owner: give USER or update a session that has one"),
            (
                vec!["TTL", "5"],
                "unknown option for QSESS.SET; accepted: DATA, USER, ANON, IP, UA, IDLE, ABSOLUTE, NX, XX, LIMIT",
            ),
        ];
        for (words, expected) in cases {
            let error = parse_set(&words).unwrap_err();
            assert_eq!(error.to_string(), expected, "for {words:?}");
        }
        let too_big = "d".repeat(101);
        assert_eq!(
            parse_set(&["DATA", &too_big]).unwrap_err().to_string(),
            "data is 101 bytes long; at most 100 are accepted (qsess.max-data-bytes)"
        );
        let long_agent = "a".repeat(MAX_USER_AGENT_BYTES + 1);
        assert!(matches!(parse_set(&["UA", &long_agent]), Err(CommandError::UserAgentTooLong(513))));
    }

    #[test]
    fn new_refuses_conditions() {
        let error = parse(&[b"NX"], OptionsFor::New, 10).unwrap_err();
        assert!(error.to_string().starts_with("unknown option for QSESS.NEW"), "{error}");
    }
}
