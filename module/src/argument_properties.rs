//! Property tests of the module's pure argument parsing: whatever a client sends, parsing never panics
//! (a panic would become `ERR internal error` at best), and everything it accepts is within the bounds
//! README documents: owners 1 to 256 bytes, user agents at most 512, data at most `max-data-bytes`,
//! timeouts at most ten years, `LIMIT` 1 to 1,000,000 and only with an owner, no `NX` with `XX`,
//! session ids 1 to 256 bytes in the bucket they name, and addresses in one normalised spelling.

use crate::bucket::Buckets;
use crate::client_ip::{self, IpMode};
use crate::limits::{
    MAX_SESSIONS_PER_USER_LIMIT, MAX_SESSION_ID_BYTES, MAX_TIMEOUT_MS, MAX_USER_AGENT_BYTES, MAX_USER_ID_BYTES,
};
use crate::session_id;
use crate::session_options::{self, parse_integer, Condition, OptionsFor, Owner};
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::IpAddr;

/// The keywords of `QSESS.SET`/`NEW` in several spellings, so arbitrary lists often parse a long way.
const KEYWORDS: &[&[u8]] = &[
    b"DATA",
    b"data",
    b"USER",
    b"user",
    b"ANON",
    b"IP",
    b"ip",
    b"UA",
    b"IDLE",
    b"ABSOLUTE",
    b"NX",
    b"XX",
    b"nx",
    b"LIMIT",
    b"Limit",
    b"NOTOUCH",
    b"EXCEPT",
    b"WITHMETA",
];

/// Values near the edges of what is accepted.
const EDGE_VALUES: &[&[u8]] = &[
    b"",
    b"0",
    b"1",
    b"-1",
    b"+1",
    b"01",
    b" 1",
    b"1000000",
    b"1000001",
    b"315619200000",
    b"315619200001",
    b"18446744073709551615",
    b"18446744073709551616",
    b"203.0.113.7",
    b"::ffff:192.0.2.1",
    b"2001:db8::1",
    b"fe80::1%eth0",
    b"[::1]",
    b"1.2.3.4:80",
    b"0.12345678",
    b"3.abc",
    b"99999.x",
    b"\xff\xfe",
];

fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(KEYWORDS).prop_map(<[u8]>::to_vec),
        3 => prop::sample::select(EDGE_VALUES).prop_map(<[u8]>::to_vec),
        2 => vec(any::<u8>(), 0..24),
        1 => (0usize..1100, any::<u8>()).prop_map(|(length, byte)| vec![byte; length]),
    ]
}

fn arguments() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(argument(), 0..14)
}

fn borrowed(arguments: &[Vec<u8>]) -> Vec<&[u8]> {
    arguments.iter().map(Vec::as_slice).collect()
}

proptest! {
    #[test]
    fn session_options_never_panic_and_stay_within_bounds(
        arguments in arguments(),
        for_new in any::<bool>(),
        max_data_bytes in prop_oneof![Just(65_536u64), 0u64..64],
    ) {
        let options_for = if for_new { OptionsFor::New } else { OptionsFor::Set };
        let words = borrowed(&arguments);
        let Ok(options) = session_options::parse(&words, options_for, max_data_bytes) else { return Ok(()) };
        if let Some(data) = options.data {
            prop_assert!(data.len() as u64 <= max_data_bytes);
        }
        if let Some(Owner::User(user_id)) = options.owner {
            prop_assert!((1..=MAX_USER_ID_BYTES).contains(&user_id.len()));
        }
        if let Some(user_agent) = options.user_agent {
            prop_assert!(user_agent.len() <= MAX_USER_AGENT_BYTES);
        }
        for timeout in [options.idle_ms, options.absolute_ms].into_iter().flatten() {
            prop_assert!(timeout <= MAX_TIMEOUT_MS);
        }
        if let Some(limit) = options.limit {
            prop_assert!((1..=MAX_SESSIONS_PER_USER_LIMIT).contains(&limit));
            prop_assert_ne!(options.owner, Some(Owner::Anonymous));
        }
        if options_for == OptionsFor::New {
            prop_assert_eq!(options.condition, None);
        }
        if let Some(ip) = options.ip {
            prop_assert_eq!(Some(ip), client_ip::parse(ip.to_string().as_bytes()).ok(), "not normalised");
        }
        // A condition comes from its own keyword.
        let given = |keyword: &[u8]| words.iter().any(|word| word.eq_ignore_ascii_case(keyword));
        match options.condition {
            Some(Condition::OnlyCreate) => prop_assert!(given(b"NX")),
            Some(Condition::OnlyUpdate) => prop_assert!(given(b"XX")),
            None => {}
        }
    }

    #[test]
    fn integers_are_plain_decimals_within_their_bounds(
        text in prop_oneof![prop::sample::select(EDGE_VALUES).prop_map(<[u8]>::to_vec), vec(any::<u8>(), 0..24)],
        min in 0u64..3,
        max in prop_oneof![Just(u64::MAX), Just(MAX_TIMEOUT_MS), 0u64..2_000_000],
    ) {
        if let Ok(number) = parse_integer(&text, "n", min, max) {
            prop_assert!((min..=max).contains(&number));
            // Only plain decimal digits are accepted: no sign, no spaces, nothing after the number.
            let printed = number.to_string();
            let given = std::str::from_utf8(&text).unwrap();
            prop_assert_eq!(printed.trim_start_matches('0'), given.trim_start_matches('0'));
        }
    }

    #[test]
    fn session_ids_are_located_only_within_their_bounds(
        session_id in prop_oneof![
            vec(any::<u8>(), 0..300),
            ("[0-9]{0,6}", "\\.?", "[A-Za-z0-9_-]{0,40}").prop_map(|(digits, dot, rest)| format!("{digits}{dot}{rest}").into_bytes()),
        ],
        bucket_count in prop_oneof![Just(1u32), 2u32..10, Just(16_384u32)],
    ) {
        let buckets = Buckets::new(bucket_count);
        if let Ok(address) = session_id::locate(&session_id, buckets) {
            prop_assert!((1..=MAX_SESSION_ID_BYTES).contains(&session_id.len()));
            prop_assert!(address.bucket < buckets.count());
            prop_assert_eq!(address.handle, qsess_record::Handle::from_session_id(&session_id));
            if bucket_count > 1 {
                // The id starts with the bucket's number (leading zeros allowed) and a dot.
                let dot = session_id.iter().position(|&byte| byte == b'.');
                let named = dot.and_then(|dot| std::str::from_utf8(&session_id[..dot]).ok()?.parse::<u32>().ok());
                prop_assert_eq!(named, Some(address.bucket), "{:?}", session_id);
            }
        }
    }

    #[test]
    fn minted_ids_are_located_in_the_bucket_they_were_minted_for(bucket_count in 1u32..64, pick in any::<u32>()) {
        let buckets = Buckets::new(bucket_count);
        let bucket = pick % buckets.count();
        let minted = session_id::mint(buckets, bucket).unwrap();
        prop_assert_eq!(session_id::locate(&minted, buckets).unwrap().bucket, bucket);
    }

    #[test]
    fn addresses_parse_to_one_spelling_and_modes_only_remove(text in prop_oneof![
        prop::sample::select(EDGE_VALUES).prop_map(<[u8]>::to_vec),
        any::<[u8; 4]>().prop_map(|octets| IpAddr::from(octets).to_string().into_bytes()),
        any::<[u8; 16]>().prop_map(|octets| IpAddr::from(octets).to_string().into_bytes()),
        vec(any::<u8>(), 0..48),
    ]) {
        let Ok(address) = client_ip::parse(&text) else { return Ok(()) };
        if let IpAddr::V6(v6) = address {
            prop_assert!(v6.to_ipv4_mapped().is_none(), "an IPv4-mapped address kept its IPv6 spelling");
        }
        prop_assert_eq!(client_ip::parse(address.to_string().as_bytes()).ok(), Some(address));
        prop_assert_eq!(client_ip::apply_mode(address, IpMode::Full), Some(address));
        prop_assert_eq!(client_ip::apply_mode(address, IpMode::None), None);
        let truncated = client_ip::apply_mode(address, IpMode::Truncated);
        prop_assert_eq!(truncated.map(|kept| kept.is_ipv4()), Some(address.is_ipv4()));
        prop_assert_eq!(truncated.and_then(|kept| client_ip::apply_mode(kept, IpMode::Truncated)), truncated);
    }
}
