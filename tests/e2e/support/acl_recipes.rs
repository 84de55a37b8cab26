//! README's ACL recipes (Security; Running on Redis Cluster), as the tests run them: what the
//! application's user and qsess-syncd's user are granted. One copy, so the tests and the README
//! cannot drift apart silently.

/// The application's user: every application command by name, the qsess keys, no channels (add
/// `on` and a password).
pub(crate) const APPLICATION_ACL_RULES: &[&str] = &[
    "resetkeys",
    "~qs:*",
    "resetchannels",
    "-@all",
    "+qsess.set",
    "+qsess.new",
    "+qsess.get",
    "+qsess.peek",
    "+qsess.touch",
    "+qsess.rotate",
    "+qsess.del",
    "+qsess.byuser",
    "+qsess.revokeuser",
    "+qsess.revoke",
];

/// What a cluster client also needs on every node: the slot map, the command table, the
/// `ASKING`/`READONLY` redirections, and the `PING` the `redis` crate's cluster client checks each
/// node with.
pub(crate) const CLUSTER_CLIENT_ACL_RULES: &[&str] =
    &["+cluster|slots", "+cluster|shards", "+command", "+asking", "+readonly", "+ping"];

/// qsess-syncd's user: its keys, its one Pub/Sub channel and exactly the commands `qsess-syncd run`
/// sends, on a standalone server or a cluster node (`ROLE`, `QSESS.STREAMS`). The module's internal
/// commands are granted by name, which works on every supported server whatever categories the
/// module can put them in.
pub(crate) const DAEMON_ACL_RULES: &[&str] = &[
    "resetkeys",
    "~qs:*",
    "resetchannels",
    "&qs:reload-user",
    "-@all",
    "+config|get",
    "+xgroup|create",
    "+xreadgroup",
    "+xack",
    "+xtrim",
    "+xpending",
    "+xinfo|groups",
    "+xlen",
    "+xrange",
    "+xrevrange",
    "+xread",
    "+subscribe",
    "+qsess.restore",
    "+qsess.restoreuser",
    "+qsess.loader",
    "+qsess.streams",
    "+role",
];

/// Creates (or resets) the `syncd` user with [`DAEMON_ACL_RULES`], `password` and `extra_rules` on
/// the server behind `admin`.
pub(crate) fn create_daemon_user(admin: &mut redis::Connection, password: &str, extra_rules: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("syncd")
        .arg("on")
        .arg(format!(">{password}"))
        .arg(DAEMON_ACL_RULES)
        .arg(extra_rules)
        .query(admin)
        .unwrap();
}
