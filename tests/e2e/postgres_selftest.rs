//! Tests of the harness's PostgreSQL part: shared and dedicated clusters, fresh databases, stop and
//! restart, and cleanup when a test process exits or is killed.

use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::NoTls;
use qsess_tests::postgres_user::{lookup_user, running_as_root, SERVER_OS_USER};
use qsess_tests::{eventually, remove_stale_cluster_dirs, shared_cluster, PgCluster};

fn show(client: &mut postgres::Client, setting: &str) -> String {
    client.query_one(&format!("show {setting}"), &[]).unwrap().get(0)
}

/// Whether `pid` names a live (not zombie) process.
fn process_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).map(str::to_owned))
        .is_some_and(|state| state != "Z" && state != "X")
}

fn port_refuses_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).is_err()
}

fn database_exists(cluster: &PgCluster, name: &str) -> bool {
    cluster.client().query_opt("select 1 from pg_database where datname = $1", &[&name]).unwrap().is_some()
}

#[test]
fn shared_cluster_answers_select_1() {
    let cluster = shared_cluster();
    assert!(cluster.is_shared());
    let mut client = cluster.client();
    let one: i32 = client.query_one("select 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    assert_ne!(cluster.port(), 5432);
    assert_eq!(cluster.url(), format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port()));
    // The same cluster every time.
    assert!(std::ptr::eq(cluster, shared_cluster()));
    assert_eq!(show(&mut client, "listen_addresses"), "127.0.0.1");
    assert_eq!(show(&mut client, "unix_socket_directories"), cluster.dir().to_str().unwrap());
    assert_eq!(show(&mut client, "fsync"), "off");
    assert_eq!(show(&mut client, "synchronous_commit"), "off");
    assert_eq!(show(&mut client, "full_page_writes"), "off");
    assert_eq!(show(&mut client, "max_connections"), "200");
    assert!(cluster.log().contains("database system is ready to accept connections"), "log: {}", cluster.log());
}

#[test]
fn fresh_databases_are_distinct_and_dropping_one_removes_it() {
    let cluster = shared_cluster();
    let a = cluster.fresh_database();
    let b = cluster.fresh_database();
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("qsess_test_"), "name: {}", a.name());
    assert_eq!(a.url(), format!("postgres://postgres@127.0.0.1:{}/{}", cluster.port(), a.name()));

    let mut in_a = a.client();
    in_a.batch_execute("create table only_in_a (x int); insert into only_in_a values (1)").unwrap();
    let current: String = in_a.query_one("select current_database()", &[]).unwrap().get(0);
    assert_eq!(current, a.name());

    // The URL works with a plain client too.
    let mut in_b = postgres::Client::connect(&b.url(), NoTls).unwrap();
    let current: String = in_b.query_one("select current_database()", &[]).unwrap().get(0);
    assert_eq!(current, b.name());
    let tables = in_b.query("select 1 from pg_tables where tablename = 'only_in_a'", &[]).unwrap();
    assert!(tables.is_empty(), "database {} sees a table of {}", b.name(), a.name());

    let a_name = a.name().to_owned();
    assert!(database_exists(cluster, &a_name));
    // Dropping works even with a client still connected: it is disconnected.
    drop(a);
    assert!(!database_exists(cluster, &a_name));
    assert!(in_a.simple_query("select 1").is_err(), "the client of a dropped database still works");
    assert!(database_exists(cluster, b.name()));
}

#[test]
fn dedicated_cluster_stops_and_restarts_under_load_with_its_data() {
    let cluster = PgCluster::start();
    assert!(!cluster.is_shared());
    let db = cluster.fresh_database();
    db.client()
        .batch_execute(
            "create table kept (v text); insert into kept values ('before the outage'); create table load (n int)",
        )
        .unwrap();
    let port = cluster.port();
    let first_pid = cluster.pid().expect("a started cluster has a postmaster");

    // A client that keeps inserting, reconnecting after every error, until told to stop.
    let done = AtomicBool::new(false);
    let successes = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let url = db.url();
    let second_pid = thread::scope(|scope| {
        let loader = scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut client = None;
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                if client.is_none() {
                    client = postgres::Client::connect(&url, NoTls).ok();
                }
                let inserted = client.as_mut().map(|c| c.execute("insert into load values (1)", &[]));
                match inserted {
                    Some(Ok(_)) => successes.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        client = None;
                        thread::sleep(Duration::from_millis(10));
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        let successes_so_far = |at_least: usize| {
            let n = successes.load(Ordering::Relaxed);
            if n >= at_least {
                Ok(n)
            } else {
                Err(format!("{n} inserts succeeded"))
            }
        };
        eventually(Duration::from_secs(10), "inserts before the stop", || successes_so_far(10));

        cluster.stop();
        assert_eq!(cluster.pid(), None);
        assert!(!process_alive(first_pid), "postmaster {first_pid} still runs after stop");
        assert!(port_refuses_connections(port));
        assert!(postgres::Client::connect(&db.url(), NoTls).is_err());
        let successes_while_stopped = successes.load(Ordering::Relaxed);
        eventually(Duration::from_secs(10), "the loader to see the outage", || {
            let n = failures.load(Ordering::Relaxed);
            if n > 0 {
                Ok(())
            } else {
                Err("no failures yet".to_owned())
            }
        });
        // Stopping twice is harmless.
        cluster.stop();
        assert_eq!(successes.load(Ordering::Relaxed), successes_while_stopped, "inserts succeeded while stopped");

        cluster.restart();
        assert_eq!(cluster.port(), port);
        let second_pid = cluster.pid().expect("a restarted cluster has a postmaster");
        assert_ne!(second_pid, first_pid);
        let after = successes.load(Ordering::Relaxed);
        eventually(Duration::from_secs(10), "inserts after the restart", || successes_so_far(after + 10));
        done.store(true, Ordering::Relaxed);
        loader.join().unwrap();
        second_pid
    });

    let mut client = db.client();
    let kept: String = client.query_one("select v from kept", &[]).unwrap().get(0);
    assert_eq!(kept, "before the outage");
    let rows: i64 = client.query_one("select count(*) from load", &[]).unwrap().get(0);
    assert!(rows >= 20, "only {rows} rows in load");

    // Restarting a running cluster stops it first.
    cluster.restart();
    let third_pid = cluster.pid().expect("a restarted cluster has a postmaster");
    assert_ne!(third_pid, second_pid);
    assert!(!process_alive(second_pid), "postmaster {second_pid} still runs after restart");
    let kept: String = db.client().query_one("select v from kept", &[]).unwrap().get(0);
    assert_eq!(kept, "before the outage");
}

#[test]
fn postgres_runs_as_the_postgres_os_user_when_root() {
    let cluster = shared_cluster();
    let pid = cluster.pid().expect("the shared cluster is running");
    let expected_uid = if running_as_root() {
        lookup_user(SERVER_OS_USER).expect("the postgres OS user exists").uid
    } else {
        fs::metadata("/proc/self").unwrap().uid()
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .expect("a Uid line")
        .split_whitespace()
        .map(|uid| uid.parse().unwrap())
        .collect();
    assert_eq!(uids, [expected_uid; 4], "real, effective, saved and filesystem uids of the postmaster");
    assert_eq!(fs::metadata(cluster.data_dir()).unwrap().uid(), expected_uid);
    let user: String = cluster.client().query_one("select current_user::text", &[]).unwrap().get(0);
    assert_eq!(user, "postgres");
}

#[test]
fn the_shared_cluster_cannot_be_stopped_or_restarted() {
    let cluster = shared_cluster();
    for (operation, result) in [
        ("stop", panic::catch_unwind(AssertUnwindSafe(|| cluster.stop()))),
        ("restart", panic::catch_unwind(AssertUnwindSafe(|| cluster.restart()))),
    ] {
        let payload = result.expect_err("the shared cluster must refuse");
        let message = payload.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains(&format!("cannot {operation} the shared PostgreSQL cluster")), "message: {message}");
    }
    let one: i32 = cluster.client().query_one("select 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

#[test]
fn dropping_a_dedicated_cluster_stops_it_and_removes_its_directory() {
    let cluster = PgCluster::start();
    let pid = cluster.pid().unwrap();
    let port = cluster.port();
    let dir = cluster.dir().to_owned();
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    let db = cluster.fresh_database();
    drop(db);
    drop(cluster);
    assert!(!process_alive(pid), "postmaster {pid} still runs");
    assert!(port_refuses_connections(port));
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// The `qsess-pg-holder` binary holding a shared cluster in a child process; killed on drop.
struct ChildTestProcess {
    child: Child,
    postmaster_pid: u32,
    dir: PathBuf,
}

impl ChildTestProcess {
    fn start() -> ChildTestProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_qsess-pg-holder"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (report, reported) = mpsc::channel();
        // Reads all of stdout, so the child never writes to a closed pipe.
        thread::spawn(move || {
            let mut other_lines = String::new();
            let mut report = Some(report);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match (line.split_once(' ').is_some(), report.take()) {
                    (true, Some(report)) => {
                        let _ = report.send(Ok(line.trim().to_owned()));
                    }
                    (_, unsent) => {
                        report = unsent;
                        other_lines.push_str(&line);
                        other_lines.push('\n');
                    }
                }
            }
            if let Some(report) = report {
                let _ = report.send(Err(other_lines));
            }
        });
        let mut process = ChildTestProcess { child, postmaster_pid: 0, dir: PathBuf::new() };
        let line = match reported.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) => line,
            Ok(Err(output)) => panic!("the child test process exited without reporting a cluster:\n{output}"),
            Err(e) => panic!("no report from the child test process within 60 s: {e}"),
        };
        let (pid, dir) = line.split_once(' ').expect("pid and directory");
        process.postmaster_pid = pid.parse().unwrap();
        process.dir = PathBuf::from(dir);
        assert!(process_alive(process.postmaster_pid));
        assert!(process.dir.is_dir());
        process
    }

    fn wait(&mut self) -> ExitStatus {
        eventually(Duration::from_secs(30), "the child test process to exit", || {
            self.child.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".to_owned())
        })
    }
}

impl Drop for ChildTestProcess {
    fn drop(&mut self) {
        // Our own unreaped child: Child::kill signals exactly that pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_exiting_test_process_stops_its_shared_cluster_and_removes_its_directory() {
    let mut process = ChildTestProcess::start();
    // Closing its stdin lets the holder return from main and exit normally.
    drop(process.child.stdin.take());
    let status = process.wait();
    assert!(status.success(), "the child test process exited with {status}");
    // The atexit hook waited for the postmaster before the process exited.
    assert!(!process_alive(process.postmaster_pid), "postmaster {} outlived its test process", process.postmaster_pid);
    assert!(!process.dir.exists(), "{} is still there", process.dir.display());
}

#[test]
fn a_killed_test_process_takes_its_shared_cluster_down() {
    let mut process = ChildTestProcess::start();
    // SIGKILL: no destructors, no atexit hooks; only the parent-death signal is left.
    process.child.kill().unwrap();
    process.wait();
    let pid = process.postmaster_pid;
    eventually(Duration::from_secs(20), "the orphaned postmaster to exit", || {
        if process_alive(pid) {
            Err(format!("postmaster {pid} is still running"))
        } else {
            Ok(())
        }
    });
    // The directory is left behind, for the sweep at the next cluster start (here, or in any
    // other test process that got there first).
    remove_stale_cluster_dirs();
    assert!(!process.dir.exists(), "{} is still there", process.dir.display());
}
