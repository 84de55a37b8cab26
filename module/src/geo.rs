//! Locations from a MaxMind City or Country database (`qsess.geoip-db`): the memory-mapped reader, its
//! atomic swap when the setting changes, and the lookup that turns a client address into `loc`
//! ("Tehran, Iran") and `cc` ("IR").
//!
//! Opening a database maps the file and checks what can be checked in well under a millisecond (the
//! metadata, the database type, and a few probe lookups), so `CONFIG SET` never stalls Redis on a
//! 60 MB file. The new reader replaces the old one in one pointer swap under a lock that lookups hold
//! only to clone an `Arc`; a database that fails to open leaves the previous one in use. A lookup that
//! fails (an address the database does not cover, a private address, a corrupt record) is simply no
//! location: it never fails the write.
//!
//! A database file replaced under the same path (by MaxMind's `geoipupdate`, which writes a new file
//! and renames it over the old one) is picked up by itself: a lookup checks, at most once per
//! [`RECHECK_INTERVAL`], whether the path still names the file that is mapped, and opens the new one if
//! not. Redis does not call a module back for a `CONFIG SET` that repeats the current value, so this
//! is what makes "run geoipupdate" enough. The file must never be rewritten in place: the mapping of
//! the old file stays valid only because a rename leaves it alone.

use maxminddb::{MaxMindDbError, Mmap, Reader};
use serde::Deserialize;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often, at most, a lookup checks whether the database file was replaced (one `stat`).
pub(crate) const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The longest location kept; real city and country names are far shorter.
pub(crate) const MAX_LOCATION_LEN: usize = 128;

/// Why a database was refused. The previous database, if any, stays in use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GeoError {
    #[error("the path is not UTF-8 text")]
    PathNotText,
    #[error("cannot open '{path}': {source}")]
    Open { path: String, source: std::io::Error },
    #[error("'{path}' is a directory, not a MaxMind .mmdb file")]
    Directory { path: String },
    #[error("'{path}' is not a MaxMind database: {reason}")]
    NotMaxMind { path: String, reason: String },
    #[error(
        "'{path}' is a {database_type} database; qsess needs a City or Country database \
         (GeoLite2-City, GeoLite2-Country, GeoIP2-City, GeoIP2-Country)"
    )]
    NoLocations { path: String, database_type: String },
    #[error("'{path}' is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

/// An open database, the path it was opened from, and which file that path named then.
pub(crate) struct Database {
    path: String,
    file: FileIdentity,
    reader: Reader<Mmap>,
}

/// What tells one file from another under the same path: a rename gives a new inode, an in-place
/// rewrite (which must not happen, but may) a new size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
        }
    }
}

impl Database {
    /// Maps and checks the database at `path`.
    pub(crate) fn open(path: &str) -> Result<Database, GeoError> {
        let owned = || path.to_owned();
        let file = match std::fs::metadata(path) {
            Err(source) => return Err(GeoError::Open { path: owned(), source }),
            Ok(metadata) if metadata.is_dir() => return Err(GeoError::Directory { path: owned() }),
            Ok(metadata) => FileIdentity::of(&metadata),
        };
        // SAFETY: the mapping stays valid as long as the file is not modified in place; the file is
        // replaced by rename (documented in README.md and done so by geoipupdate), which leaves this
        // mapping on the old inode until the reader is dropped.
        let reader = unsafe { Reader::open_mmap(Path::new(path)) }.map_err(|error| match error {
            MaxMindDbError::Io(source) | MaxMindDbError::Mmap(source) => GeoError::Open { path: owned(), source },
            other => GeoError::NotMaxMind { path: owned(), reason: other.to_string() },
        })?;
        let database_type = &reader.metadata().database_type;
        if !["City", "Country", "Enterprise"].iter().any(|kind| database_type.contains(kind)) {
            return Err(GeoError::NoLocations { path: owned(), database_type: database_type.clone() });
        }
        let database = Database { path: owned(), file, reader };
        database.probe()?;
        Ok(database)
    }

    /// A few lookups across the tree, decoded like real ones: a truncated or scrambled file fails here
    /// rather than at every write.
    fn probe(&self) -> Result<(), GeoError> {
        let probes: [IpAddr; 4] = [
            IpAddr::from([1, 1, 1, 1]),
            IpAddr::from([81, 2, 69, 142]),
            IpAddr::from([203, 0, 113, 1]),
            IpAddr::from([0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888]),
        ];
        for address in probes {
            if address.is_ipv6() && self.reader.metadata().ip_version != 6 {
                continue;
            }
            self.lookup(address)
                .map_err(|error| GeoError::Corrupt { path: self.path.clone(), reason: error.to_string() })?;
        }
        Ok(())
    }

    /// The place of `address`, `None` when the database has no country for it.
    fn lookup(&self, address: IpAddr) -> Result<Option<Place>, MaxMindDbError> {
        let Some(record) = self.reader.lookup(address)?.decode::<GeoRecord<'_>>()? else {
            return Ok(None);
        };
        Ok(Place::from_record(&record))
    }

    /// The path it was opened from, as given.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The database type from its metadata, e.g. `GeoLite2-City`.
    pub(crate) fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built, in seconds since the epoch.
    pub(crate) fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }
}

/// A location as stored in a session record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    /// "City, Country", or the country alone when the database knows no city.
    pub(crate) location: Option<Box<str>>,
    /// ISO 3166-1 alpha-2, upper case.
    pub(crate) country: Option<[u8; 2]>,
}

impl Place {
    fn from_record(record: &GeoRecord<'_>) -> Option<Place> {
        fn english<'a>(names: &Option<Names<'a>>) -> Option<&'a str> {
            names.as_ref().and_then(|names| names.english).filter(|name| !name.is_empty())
        }
        let country_name = record.country.as_ref().and_then(|country| english(&country.names));
        let city_name = record.city.as_ref().and_then(|city| english(&city.names));
        let country = record
            .country
            .as_ref()
            .and_then(|country| country.iso_code)
            .and_then(|code| <[u8; 2]>::try_from(code.as_bytes()).ok())
            .filter(|code| code.iter().all(u8::is_ascii_alphabetic))
            .map(|code| code.map(|letter| letter.to_ascii_uppercase()));
        let location = match (city_name, country_name) {
            (Some(city), Some(country)) => Some(format!("{city}, {country}")),
            (None, Some(name)) | (Some(name), None) => Some(name.to_owned()),
            (None, None) => None,
        };
        let location = location.map(|text| truncate(text).into_boxed_str());
        (location.is_some() || country.is_some()).then_some(Place { location, country })
    }

    pub(crate) fn location_bytes(&self) -> Option<&[u8]> {
        self.location.as_deref().map(str::as_bytes)
    }

    pub(crate) fn country_bytes(&self) -> Option<&[u8]> {
        self.country.as_ref().map(<[u8; 2]>::as_slice)
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_LOCATION_LEN {
        let mut end = MAX_LOCATION_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The part of a GeoIP2 City or Country record qsess reads; everything else is skipped.
#[derive(Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow, default)]
    city: Option<NamedPlace<'a>>,
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
}

#[derive(Deserialize)]
struct NamedPlace<'a> {
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default, rename = "en")]
    english: Option<&'a str>,
}

/// The database in use; commands clone the `Arc` and look up without holding the lock.
static CURRENT: Mutex<Option<Arc<Database>>> = Mutex::new(None);

/// When the file behind the database in use was last checked, and a replacement that failed to open
/// (not retried until the file changes again).
struct Watch {
    last_check: Option<Instant>,
    refused: Option<FileIdentity>,
}

static WATCH: Mutex<Watch> = Mutex::new(Watch { last_check: None, refused: None });

fn current_slot() -> MutexGuard<'static, Option<Arc<Database>>> {
    CURRENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens the database named by a `qsess.geoip-db` value; `None` for the empty value (no database).
pub(crate) fn open_setting(value: &[u8]) -> Result<Option<Database>, GeoError> {
    if value.is_empty() {
        return Ok(None);
    }
    let path = std::str::from_utf8(value).map_err(|_| GeoError::PathNotText)?;
    Database::open(path).map(Some)
}

/// Puts `database` in use (or none); the previous one is unmapped once no lookup holds it.
pub(crate) fn install(database: Option<Database>) {
    let new = database.map(Arc::new);
    let old = std::mem::replace(&mut *current_slot(), new);
    drop(old);
    let mut watch = WATCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *watch = Watch { last_check: Some(Instant::now()), refused: None };
}

/// Opens the file now at `database`'s path if it is not the mapped one, at most once per
/// [`RECHECK_INTERVAL`]; returns the database to use.
fn follow_replacement(database: Arc<Database>, now: Instant) -> Arc<Database> {
    {
        let mut watch = WATCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if watch.last_check.is_some_and(|last| now.saturating_duration_since(last) < RECHECK_INTERVAL) {
            return database;
        }
        watch.last_check = Some(now);
        let Ok(metadata) = std::fs::metadata(&database.path) else { return database };
        let file = FileIdentity::of(&metadata);
        if file == database.file || watch.refused == Some(file) {
            return database;
        }
        watch.refused = Some(file);
    }
    match Database::open(&database.path) {
        Ok(replacement) => {
            log_notice(&format!(
                "qsess: {} was replaced; locations now from the new file ({}, built {} s after the epoch)",
                replacement.path,
                replacement.database_type(),
                replacement.build_epoch()
            ));
            let replacement = Arc::new(replacement);
            let mut slot = current_slot();
            // Unless CONFIG SET swapped in another database meanwhile.
            if slot.as_ref().is_some_and(|current| Arc::ptr_eq(current, &database)) {
                *slot = Some(replacement.clone());
            }
            replacement
        }
        Err(error) => {
            log_warning(&format!(
                "qsess: the replaced GeoIP database is refused, the previous one stays in use: {error}"
            ));
            database
        }
    }
}

#[cfg(not(test))]
fn log_notice(message: &str) {
    redis_module::logging::log_notice(message);
}

#[cfg(not(test))]
fn log_warning(message: &str) {
    redis_module::logging::log_warning(message);
}

// Unit tests run without Redis, which has no log to write to.
#[cfg(test)]
fn log_notice(_message: &str) {}

#[cfg(test)]
fn log_warning(_message: &str) {}

/// The path of the database in use, or "" when there is none.
pub(crate) fn current_path() -> String {
    current_slot().as_ref().map(|database| database.path.clone()).unwrap_or_default()
}

/// The database in use, if any.
pub(crate) fn current() -> Option<Arc<Database>> {
    current_slot().clone()
}

/// The place of `address` in the database in use; `None` without a database or when it has no
/// country for the address (private, reserved and unknown addresses).
pub(crate) fn locate(address: IpAddr) -> Option<Place> {
    let database = follow_replacement(current()?, Instant::now());
    database.lookup(address).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Tests that use the process-wide database and watch run one at a time.
    static GLOBALS: Mutex<()> = Mutex::new(());

    fn fixture(name: &str) -> String {
        let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "tests", "fixtures", "geoip", name].iter().collect();
        path.to_string_lossy().into_owned()
    }

    fn place(database: &Database, address: &str) -> Option<(String, String)> {
        database.lookup(address.parse().unwrap()).unwrap().map(|place| {
            (
                place.location.as_deref().unwrap_or_default().to_owned(),
                String::from_utf8(place.country_bytes().unwrap_or_default().to_vec()).unwrap(),
            )
        })
    }

    #[test]
    fn city_database_gives_city_and_country() {
        let database = Database::open(&fixture("qsess-test-city.mmdb")).unwrap();
        assert_eq!(database.database_type(), "GeoLite2-City");
        assert_eq!(place(&database, "203.0.113.7"), Some(("Tehran, Iran".into(), "IR".into())));
        assert_eq!(place(&database, "198.51.100.7"), Some(("Sweden".into(), "SE".into())));
        assert_eq!(place(&database, "198.51.100.200"), Some(("Linköping, Sweden".into(), "SE".into())));
        assert_eq!(place(&database, "2001:db8:1::42"), Some(("Berlin, Germany".into(), "DE".into())));
        assert_eq!(place(&database, "2001:db8:3:8000::1"), Some(("Paris, France".into(), "FR".into())));
        // A continent but no country, an unknown network, private and loopback addresses: no place.
        for nowhere in ["2001:db8:2::1", "192.0.2.1", "10.1.2.3", "127.0.0.1", "::1", "fe80::1"] {
            assert_eq!(place(&database, nowhere), None, "{nowhere}");
        }
    }

    #[test]
    fn country_database_gives_the_country() {
        let database = Database::open(&fixture("qsess-test-country.mmdb")).unwrap();
        assert_eq!(place(&database, "203.0.113.7"), Some(("Iran".into(), "IR".into())));
        assert_eq!(place(&database, "2001:db8:1::42"), Some(("Germany".into(), "DE".into())));
        assert_eq!(place(&database, "192.0.2.1"), None);
    }

    #[test]
    fn refuses_what_is_not_a_city_or_country_database() {
        let error = Database::open(&fixture("qsess-test-asn.mmdb")).err().unwrap();
        assert!(
            matches!(error, GeoError::NoLocations { ref database_type, .. } if database_type == "GeoLite2-ASN"),
            "{error}"
        );
        let error = Database::open("/nonexistent/GeoLite2-City.mmdb").err().unwrap();
        assert!(error.to_string().starts_with("cannot open '/nonexistent/GeoLite2-City.mmdb': "), "{error}");
        let error = Database::open(env!("CARGO_MANIFEST_DIR")).err().unwrap();
        assert!(matches!(error, GeoError::Directory { .. }), "{error}");
        let error = Database::open(&format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR"))).err().unwrap();
        assert!(matches!(error, GeoError::NotMaxMind { .. }), "{error}");
        assert!(matches!(open_setting(b"\xff"), Err(GeoError::PathNotText)));
        assert!(matches!(open_setting(b""), Ok(None)));
    }

    #[test]
    fn refuses_a_truncated_or_scrambled_database() {
        let good = std::fs::read(fixture("qsess-test-city.mmdb")).unwrap();
        let dir = std::env::temp_dir().join(format!("qsess-geo-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Cut before the metadata: not a MaxMind database any more.
        let truncated = dir.join("truncated.mmdb");
        std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
        let error = Database::open(truncated.to_str().unwrap()).err().unwrap();
        assert!(matches!(error, GeoError::NotMaxMind { .. }), "{error}");
        // Search tree overwritten with pointers past the end: the probe lookups catch it.
        let mut scrambled = good.clone();
        for byte in scrambled.iter_mut().take(600) {
            *byte = 0xfe;
        }
        let scrambled_path = dir.join("scrambled.mmdb");
        std::fs::write(&scrambled_path, &scrambled).unwrap();
        let error = Database::open(scrambled_path.to_str().unwrap()).err().unwrap();
        assert!(matches!(error, GeoError::Corrupt { .. } | GeoError::NotMaxMind { .. }), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn install_swaps_and_keeps_the_path() {
        let _globals = GLOBALS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        install(open_setting(fixture("qsess-test-country.mmdb").as_bytes()).unwrap());
        assert_eq!(current_path(), fixture("qsess-test-country.mmdb"));
        assert_eq!(locate("203.0.113.7".parse().unwrap()).unwrap().location.as_deref(), Some("Iran"));
        let held = current().unwrap();
        install(open_setting(fixture("qsess-test-city.mmdb").as_bytes()).unwrap());
        assert_eq!(locate("203.0.113.7".parse().unwrap()).unwrap().location.as_deref(), Some("Tehran, Iran"));
        // A lookup that started before the swap finishes on the old database.
        assert_eq!(held.lookup("203.0.113.7".parse().unwrap()).unwrap().unwrap().location.as_deref(), Some("Iran"));
        install(None);
        assert_eq!((current_path(), locate("203.0.113.7".parse().unwrap())), (String::new(), None));
    }

    #[test]
    fn a_file_replaced_by_rename_is_followed_and_a_bad_replacement_refused() {
        let _globals = GLOBALS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = std::env::temp_dir().join(format!("qsess-geo-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("GeoLite2-City.mmdb");
        std::fs::copy(fixture("qsess-test-country.mmdb"), &path).unwrap();
        let database = Arc::new(Database::open(path.to_str().unwrap()).unwrap());
        let start = Instant::now();
        let replace_with = |bytes: &[u8]| {
            let next = dir.join("next.mmdb");
            std::fs::write(&next, bytes).unwrap();
            std::fs::rename(&next, &path).unwrap();
        };
        replace_with(&std::fs::read(fixture("qsess-test-city.mmdb")).unwrap());
        // Checked at most once per interval.
        *WATCH.lock().unwrap() = Watch { last_check: Some(start), refused: None };
        assert!(Arc::ptr_eq(&follow_replacement(database.clone(), start), &database));
        let followed = follow_replacement(database.clone(), start + RECHECK_INTERVAL);
        assert_eq!(
            followed.lookup("203.0.113.7".parse().unwrap()).unwrap().unwrap().location.as_deref(),
            Some("Tehran, Iran")
        );
        // A broken replacement is refused once, and the database in hand stays.
        replace_with(b"not a database");
        let later = start + 2 * RECHECK_INTERVAL;
        assert!(Arc::ptr_eq(&follow_replacement(followed.clone(), later), &followed));
        assert_eq!(WATCH.lock().unwrap().refused.map(|file| file.size), Some(14));
        assert!(Arc::ptr_eq(&follow_replacement(followed.clone(), later + RECHECK_INTERVAL), &followed));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let long = "ö".repeat(100);
        assert_eq!(truncate(long).len(), MAX_LOCATION_LEN);
    }
}
