//! What one device summary costs without the module's cache: parses common user agents many times and
//! prints the mean time per parse; then what a cache hit costs, with the structure of
//! module/src/device.rs (a mutex-guarded std `HashMap` keyed by the user agent's bytes, `Arc<str>`
//! values); then what packing and unpacking an agent costs (record format 3, on every write and on a
//! read of another agent than the last). `cargo run --release -p qsess-record --example device_cost` (bench/geo.sh runs it next to
//! the QSESS.SET measurement).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 \
     Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 \
     Safari/605.1.15",
    "python-requests/2.31.0",
];

const ROUNDS: u32 = 20_000;

fn main() {
    let first = Instant::now();
    let _ = qsess_record::device_summary(USER_AGENTS[0].as_bytes());
    println!("first parse (builds the parser's tables): {:.0} us", first.elapsed().as_secs_f64() * 1e6);
    let mut total = 0.0;
    for user_agent in USER_AGENTS {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            black_box(qsess_record::device_summary(black_box(user_agent.as_bytes())));
        }
        let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
        total += micros;
        let summary = qsess_record::device_summary(user_agent.as_bytes());
        println!(
            "{micros:6.2} us  {:<26} {}",
            summary.as_deref().unwrap_or("(none)"),
            &user_agent[..user_agent.len().min(60)]
        );
    }
    println!("mean: {:.2} us per parse", total / USER_AGENTS.len() as f64);

    type Cache = HashMap<Box<[u8]>, Option<Arc<str>>>;
    let cache: Mutex<Cache> = Mutex::new(
        USER_AGENTS
            .iter()
            .map(|agent| (agent.as_bytes().into(), qsess_record::device_summary(agent.as_bytes()).map(Arc::from)))
            .collect(),
    );
    let start = Instant::now();
    let hits = ROUNDS * 10;
    for n in 0..hits {
        let agent = USER_AGENTS[n as usize % USER_AGENTS.len()].as_bytes();
        let guard = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        black_box(guard.get(black_box(agent)).cloned());
    }
    let nanos = start.elapsed().as_secs_f64() * 1e9 / f64::from(hits);
    println!("cache hit: {nanos:.0} ns per lookup");

    let mut packed = Vec::with_capacity(512);
    for user_agent in USER_AGENTS {
        let start = Instant::now();
        for _ in 0..ROUNDS * 10 {
            packed.clear();
            black_box(qsess_record::pack_user_agent(black_box(user_agent.as_bytes()), &mut packed));
        }
        let pack_nanos = start.elapsed().as_secs_f64() * 1e9 / f64::from(ROUNDS * 10);
        let start = Instant::now();
        for _ in 0..ROUNDS * 10 {
            black_box(qsess_record::UserAgent::Packed(black_box(&packed)).text());
        }
        let unpack_nanos = start.elapsed().as_secs_f64() * 1e9 / f64::from(ROUNDS * 10);
        println!(
            "pack {pack_nanos:4.0} ns, unpack {unpack_nanos:4.0} ns: {:3} -> {:3} bytes  {}",
            user_agent.len(),
            packed.len(),
            &user_agent[..user_agent.len().min(60)]
        );
    }
}
