//! Writes the MaxMind test databases qsess generates itself (see `qsess_tests::geoip_fixtures`).
//!
//! ```text
//! qsess-geoip-fixtures                      # rewrite tests/fixtures/geoip/*.mmdb
//! qsess-geoip-fixtures --bench N FILE       # a synthetic GeoLite2-City-sized database with N IPv4 networks
//! ```

use std::path::Path;
use std::process::ExitCode;

use qsess_tests::geoip_fixtures::{bench_city_database, fixtures_dir, FIXTURES};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let result = match arguments.as_slice() {
        [] => write_fixtures(),
        [flag, networks, file] if flag == "--bench" => match networks.parse::<usize>() {
            Ok(networks) => write_file(Path::new(file), &bench_city_database(networks)),
            Err(_) => Err(format!("--bench takes a number of networks, not '{networks}'")),
        },
        _ => Err("usage: qsess-geoip-fixtures [--bench NETWORKS FILE]".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("qsess-geoip-fixtures: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write_fixtures() -> Result<(), String> {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, generate) in FIXTURES {
        write_file(&dir.join(name), &generate())?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(())
}
