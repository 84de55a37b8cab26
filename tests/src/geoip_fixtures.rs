//! MaxMind databases (.mmdb) that the project writes itself, so that nothing is downloaded to test
//! locations: a tiny City, Country and ASN database (committed under `tests/fixtures/geoip/`, and a test
//! checks that regenerating them gives the same bytes) and a large synthetic City database for
//! benchmarks, shaped like GeoLite2-City (millions of search-tree nodes), generated on demand.
//!
//! The records follow GeoIP2's layout (`city.names.en`, `country.iso_code`, ...), written with
//! `maxminddb-writer`. The databases are IPv6 trees; IPv4 networks live under `::a.b.c.d/(96 + len)`,
//! where MaxMind's readers look IPv4 addresses up. All addresses are documentation ranges
//! (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32): the places are made up.
//!
//! ```text
//! City database                    Country database          ASN database
//! 203.0.113.0/24     Tehran, IR    203.0.113.0/24   IR       203.0.113.0/24  AS64496
//! 198.51.100.0/25    (SE only)     198.51.100.0/24  SE
//! 198.51.100.128/25  Linköping, SE 2001:db8:1::/48  DE
//! 2001:db8:1::/48    Berlin, DE
//! 2001:db8:2::/48    (continent only, no country)
//! 2001:db8:3:8000::/49 Paris, FR
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use maxminddb_writer::Database;
use serde::Serialize;

/// A fixed build time (2025-01-01), so that the bytes do not depend on when they were generated.
const BUILD_EPOCH: u64 = 1_735_689_600;

/// Writes one database.
pub type Generator = fn() -> Vec<u8>;

/// The committed fixtures: file name and generator.
pub const FIXTURES: [(&str, Generator); 3] = [
    ("qsess-test-city.mmdb", city_database),
    ("qsess-test-country.mmdb", country_database),
    ("qsess-test-asn.mmdb", asn_database),
];

/// `tests/fixtures/geoip`, where the committed fixtures live.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("geoip")
}

/// The path of a committed fixture, e.g. `fixture_path("qsess-test-city.mmdb")`.
pub fn fixture_path(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

type Names<'a> = BTreeMap<&'a str, &'a str>;

#[derive(Serialize, Clone)]
struct NamedPlace<'a> {
    geoname_id: u32,
    names: Names<'a>,
}

#[derive(Serialize, Clone)]
struct Continent<'a> {
    code: &'a str,
    geoname_id: u32,
    names: Names<'a>,
}

#[derive(Serialize, Clone)]
struct Country<'a> {
    geoname_id: u32,
    iso_code: &'a str,
    names: Names<'a>,
}

#[derive(Serialize, Clone)]
struct Location<'a> {
    accuracy_radius: u16,
    latitude: f64,
    longitude: f64,
    time_zone: &'a str,
}

/// A GeoIP2 City record (the fields qsess reads, and a few it does not, as real records have).
#[derive(Serialize, Clone)]
struct CityRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<NamedPlace<'a>>,
    continent: Continent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<Country<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Location<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_country: Option<Country<'a>>,
}

/// A GeoIP2 Country record.
#[derive(Serialize, Clone)]
struct CountryRecord<'a> {
    continent: Continent<'a>,
    country: Country<'a>,
    registered_country: Country<'a>,
}

/// A GeoLite2 ASN record: a database qsess must refuse, since it has no locations.
#[derive(Serialize)]
struct AsnRecord<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

fn names<'a>(english: &'a str, german: &'a str) -> Names<'a> {
    BTreeMap::from([("de", german), ("en", english)])
}

fn asia() -> Continent<'static> {
    Continent { code: "AS", geoname_id: 6_255_147, names: names("Asia", "Asien") }
}

fn europe() -> Continent<'static> {
    Continent { code: "EU", geoname_id: 6_255_148, names: names("Europe", "Europa") }
}

fn iran() -> Country<'static> {
    Country { geoname_id: 130_758, iso_code: "IR", names: names("Iran", "Iran") }
}

fn sweden() -> Country<'static> {
    Country { geoname_id: 2_661_886, iso_code: "SE", names: names("Sweden", "Schweden") }
}

fn germany() -> Country<'static> {
    Country { geoname_id: 2_921_044, iso_code: "DE", names: names("Germany", "Deutschland") }
}

fn france() -> Country<'static> {
    Country { geoname_id: 3_017_382, iso_code: "FR", names: names("France", "Frankreich") }
}

fn city_record<'a>(
    city: Option<(u32, Names<'a>)>,
    continent: Continent<'a>,
    country: Option<Country<'a>>,
    location: (f64, f64, &'a str),
) -> CityRecord<'a> {
    let (latitude, longitude, time_zone) = location;
    CityRecord {
        city: city.map(|(geoname_id, names)| NamedPlace { geoname_id, names }),
        continent,
        registered_country: country.clone(),
        country,
        location: Some(Location { accuracy_radius: 100, latitude, longitude, time_zone }),
    }
}

/// An empty IPv6 database of `database_type`, with the metadata MaxMind's readers require.
fn new_database(database_type: &str) -> Database {
    let mut database = Database::default();
    database.metadata.binary_format_major_version = 2;
    database.metadata.binary_format_minor_version = 0;
    database.metadata.ip_version = IpVersion::V6;
    database.metadata.database_type = database_type.to_owned();
    database.metadata.languages = vec!["de".to_owned(), "en".to_owned()];
    database.metadata.build_epoch = BUILD_EPOCH;
    // One entry only: the writer keeps descriptions in a HashMap, whose order is not fixed.
    database.metadata.description.insert("en".to_owned(), format!("qsess test {database_type}, made-up data"));
    database
}

/// A network as the writer's IPv6 tree path; IPv4 networks go under `::a.b.c.d/(96 + len)`.
fn network(text: &str) -> IpAddrWithMask {
    let (address, length) = text.split_once('/').unwrap_or_else(|| panic!("network {text} has no /length"));
    let length: u8 = length.parse().unwrap_or_else(|_| panic!("network {text} has a bad length"));
    match address.parse::<IpAddr>().unwrap_or_else(|_| panic!("network {text} has a bad address")) {
        IpAddr::V4(v4) => IpAddrWithMask::new(IpAddr::V6(v4.to_ipv6_compatible()), 96 + length),
        IpAddr::V6(v6) => IpAddrWithMask::new(IpAddr::V6(v6), length),
    }
}

fn insert<T: Serialize>(database: &mut Database, networks: &[&str], value: T) {
    let data = database.insert_value(value).unwrap_or_else(|e| panic!("cannot serialise a record: {e}"));
    for text in networks {
        database.insert_node(network(text), data);
    }
}

fn write(database: &Database) -> Vec<u8> {
    database.write_to(Vec::new()).unwrap_or_else(|e| panic!("cannot write the database: {e}"))
}

/// The committed City fixture (`GeoLite2-City` layout); see the module docs for its networks.
pub fn city_database() -> Vec<u8> {
    let mut database = new_database("GeoLite2-City");
    let tehran = city_record(
        Some((112_931, names("Tehran", "Teheran"))),
        asia(),
        Some(iran()),
        (35.6944, 51.4215, "Asia/Tehran"),
    );
    insert(&mut database, &["203.0.113.0/24"], tehran);
    let sweden_only = city_record(None, europe(), Some(sweden()), (59.3247, 18.056, "Europe/Stockholm"));
    insert(&mut database, &["198.51.100.0/25"], sweden_only);
    let linkoping = city_record(
        Some((2_694_762, names("Linköping", "Linköping"))),
        europe(),
        Some(sweden()),
        (58.4167, 15.6167, "Europe/Stockholm"),
    );
    insert(&mut database, &["198.51.100.128/25"], linkoping);
    let berlin = city_record(
        Some((2_950_159, names("Berlin", "Berlin"))),
        europe(),
        Some(germany()),
        (52.5244, 13.4105, "Europe/Berlin"),
    );
    insert(&mut database, &["2001:db8:1::/48"], berlin);
    let continent_only =
        CityRecord { city: None, continent: europe(), country: None, location: None, registered_country: None };
    insert(&mut database, &["2001:db8:2::/48"], continent_only);
    let paris = city_record(
        Some((2_988_507, names("Paris", "Paris"))),
        europe(),
        Some(france()),
        (48.8534, 2.3488, "Europe/Paris"),
    );
    insert(&mut database, &["2001:db8:3:8000::/49"], paris);
    write(&database)
}

/// The committed Country fixture (`GeoLite2-Country` layout).
pub fn country_database() -> Vec<u8> {
    let mut database = new_database("GeoLite2-Country");
    let country = |continent, country: Country<'static>| CountryRecord {
        continent,
        registered_country: country.clone(),
        country,
    };
    insert(&mut database, &["203.0.113.0/24"], country(asia(), iran()));
    insert(&mut database, &["198.51.100.0/24"], country(europe(), sweden()));
    insert(&mut database, &["2001:db8:1::/48"], country(europe(), germany()));
    write(&database)
}

/// The committed ASN fixture: a valid MaxMind database without locations, which qsess refuses.
pub fn asn_database() -> Vec<u8> {
    let mut database = new_database("GeoLite2-ASN");
    let record = AsnRecord { autonomous_system_number: 64_496, autonomous_system_organization: "Example Networks" };
    insert(&mut database, &["203.0.113.0/24"], record);
    write(&database)
}

/// A large synthetic City database for benchmarks, shaped like GeoLite2-City: `networks` IPv4
/// networks (/18 to /28) and a quarter as many IPv6 ones (/32 to /56), spread over the address space
/// by a fixed pseudo-random sequence, pointing at 5,000 made-up cities in 200 countries. Lookups then
/// walk as deep a tree, over as much memory, as in the real database. 203.0.113.0/24 (the benchmark's
/// address) is Tehran, as in [`city_database`].
pub fn bench_city_database(networks: usize) -> Vec<u8> {
    let mut database = new_database("GeoLite2-City");
    let mut random = SplitMix64(0x5eed_5eed_5eed_5eed);
    let country_names: Vec<(String, String)> = (0..200)
        .map(|n| {
            (format!("{}{}", (b'A' + (n / 26) as u8) as char, (b'A' + (n % 26) as u8) as char), format!("Country {n}"))
        })
        .collect();
    let city_names: Vec<String> = (0..5_000).map(|n| format!("City {n}")).collect();
    let mut cities = Vec::with_capacity(city_names.len());
    for (n, city_name) in city_names.iter().enumerate() {
        let (iso_code, country_name) = &country_names[n % country_names.len()];
        let country =
            Country { geoname_id: 1_000_000 + (n % 200) as u32, iso_code, names: names(country_name, country_name) };
        let record = city_record(
            Some((2_000_000 + n as u32, names(city_name, city_name))),
            europe(),
            Some(country),
            (f64::from(n as u32 % 180) - 90.0, f64::from(n as u32 % 360) - 180.0, "Europe/Berlin"),
        );
        cities.push(database.insert_value(record).unwrap_or_else(|e| panic!("cannot serialise a record: {e}")));
    }
    for _ in 0..networks {
        let address = Ipv4Addr::from((random.next() >> 32) as u32);
        let length = 18 + (random.next() % 11) as u8;
        let city = cities[(random.next() % cities.len() as u64) as usize];
        database.insert_node(IpAddrWithMask::new(IpAddr::V6(address.to_ipv6_compatible()), 96 + length), city);
    }
    for _ in 0..networks / 4 {
        // Global unicast 2000::/3, as in the real database.
        let address = Ipv6Addr::from((u128::from(random.next()) << 64 | u128::from(random.next())) >> 3 | 1 << 125);
        let length = 32 + (random.next() % 25) as u8;
        let city = cities[(random.next() % cities.len() as u64) as usize];
        database.insert_node(IpAddrWithMask::new(IpAddr::V6(address), length), city);
    }
    let tehran = city_record(
        Some((112_931, names("Tehran", "Teheran"))),
        asia(),
        Some(iran()),
        (35.6944, 51.4215, "Asia/Tehran"),
    );
    insert(&mut database, &["203.0.113.0/24"], tehran);
    write(&database)
}

/// A fixed pseudo-random sequence (SplitMix64), so benchmark databases are reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
