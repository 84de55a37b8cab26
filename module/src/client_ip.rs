//! Client IP addresses: parsing, normalisation and the `qsess.ip-mode` privacy switch.

use crate::error::CommandError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How much of a client's IP address is kept (`qsess.ip-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpMode {
    Full,
    /// IPv4 to its /24, IPv6 to its /48: enough for "which network", not for "which household".
    Truncated,
    None,
}

/// Parses an address and normalises it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) becomes plain IPv4, so one
/// client has one spelling. Zone ids, ports and brackets are refused.
pub(crate) fn parse(text: &[u8]) -> Result<IpAddr, CommandError> {
    let refuse = || CommandError::BadIp;
    let text = std::str::from_utf8(text).map_err(|_| refuse())?;
    let address: IpAddr = text.parse().map_err(|_| refuse())?;
    Ok(match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

/// What is stored of `address` under `mode`.
pub(crate) fn apply_mode(address: IpAddr, mode: IpMode) -> Option<IpAddr> {
    match mode {
        IpMode::Full => Some(address),
        IpMode::None => None,
        IpMode::Truncated => Some(match address {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
            }
            IpAddr::V6(v6) => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(segments[0], segments[1], segments[2], 0, 0, 0, 0, 0))
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(parse(b"203.0.113.7").unwrap().to_string(), "203.0.113.7");
        assert_eq!(parse(b"2001:DB8:0:0::1").unwrap().to_string(), "2001:db8::1");
        assert_eq!(parse(b"::ffff:192.0.2.1").unwrap().to_string(), "192.0.2.1");
        assert_eq!(parse(b"::1").unwrap().to_string(), "::1");
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [&b""[..], b"1.2.3", b"256.1.1.1", b"1.2.3.4:80", b"[::1]", b"fe80::1%eth0", b"localhost", b"\xff"] {
            assert!(matches!(parse(bad), Err(CommandError::BadIp)), "accepted {bad:?}");
        }
    }

    #[test]
    fn truncation_keeps_the_network() {
        let v4 = parse(b"203.0.113.77").unwrap();
        assert_eq!(apply_mode(v4, IpMode::Truncated).unwrap().to_string(), "203.0.113.0");
        let v6 = parse(b"2001:db8:abcd:12::99").unwrap();
        assert_eq!(apply_mode(v6, IpMode::Truncated).unwrap().to_string(), "2001:db8:abcd::");
        assert_eq!(apply_mode(v4, IpMode::None), None);
        assert_eq!(apply_mode(v4, IpMode::Full), Some(v4));
    }
}
