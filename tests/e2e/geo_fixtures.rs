//! The MaxMind databases under tests/fixtures/geoip are what the project's generator writes: running
//! it again (`cargo run -p qsess-tests --bin qsess-geoip-fixtures`) gives the same bytes.

use qsess_tests::geoip_fixtures::{fixture_path, FIXTURES};

#[test]
fn regenerating_the_fixture_databases_gives_identical_bytes() {
    for (name, generate) in FIXTURES {
        let committed = std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"));
        let generated = generate();
        assert!(
            committed == generated,
            "tests/fixtures/geoip/{name} differs from what the generator writes ({} vs {} bytes); \
             regenerate with `cargo run -p qsess-tests --bin qsess-geoip-fixtures` and commit the result",
            committed.len(),
            generated.len()
        );
        assert!(generated.len() < 8 * 1024, "{name} should stay a few KB, is {} bytes", generated.len());
    }
}

#[test]
fn generation_is_deterministic() {
    for (name, generate) in FIXTURES {
        assert!(generate() == generate(), "{name} differs between two runs");
    }
}
