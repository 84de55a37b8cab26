//! A typed client for the QSESS commands over one `redis::Connection`: replies in the shapes tests
//! read them (versions, record fields in reply order, handles), and a panic naming the command when a
//! reply has another shape.

use redis::{Connection, Value};

/// A record reply as (field, value) pairs, in the order the command sent them.
pub(crate) type RecordFields = Vec<(String, Value)>;

/// The QSESS commands on one connection.
pub(crate) struct QsessClient<'connection> {
    connection: &'connection mut Connection,
}

impl<'connection> QsessClient<'connection> {
    pub(crate) fn new(connection: &'connection mut Connection) -> QsessClient<'connection> {
        QsessClient { connection }
    }

    /// `QSESS.SET sid options...`: the new version, or `None` when `NX`/`XX` did not hold.
    pub(crate) fn set(&mut self, session_id: &str, options: &[&str]) -> Option<i64> {
        match self.reply("QSESS.SET", session_id, options) {
            Value::Int(version) => Some(version),
            Value::Nil => None,
            other => panic!("QSESS.SET {session_id} {options:?} replied {other:?}, expected a version"),
        }
    }

    /// `QSESS.SET` that must write: the new version.
    pub(crate) fn set_expecting_version(&mut self, session_id: &str, options: &[&str]) -> i64 {
        self.set(session_id, options)
            .unwrap_or_else(|| panic!("QSESS.SET {session_id} {options:?} replied nil, expected a version"))
    }

    /// `QSESS.DEL sid...`: how many live sessions were ended.
    pub(crate) fn del(&mut self, session_ids: &[&str]) -> i64 {
        redis::cmd("QSESS.DEL")
            .arg(session_ids)
            .query(self.connection)
            .unwrap_or_else(|error| panic!("QSESS.DEL {session_ids:?} failed: {error}"))
    }

    /// `QSESS.PEEK sid`: the record's fields, or `None` for nil.
    pub(crate) fn peek(&mut self, session_id: &str) -> Option<RecordFields> {
        let reply = self.reply("QSESS.PEEK", session_id, &[]);
        ordered_record_fields(reply, "QSESS.PEEK")
    }

    /// `QSESS.GET sid NOTOUCH`: the record's fields, or `None` for nil.
    pub(crate) fn get_without_touch(&mut self, session_id: &str) -> Option<RecordFields> {
        let reply = self.reply("QSESS.GET", session_id, &["NOTOUCH"]);
        ordered_record_fields(reply, "QSESS.GET")
    }

    /// `QSESS.BYUSER uid`: the handles of the user's live sessions, soonest to expire first.
    pub(crate) fn byuser_handles(&mut self, user_id: &str) -> Vec<String> {
        redis::cmd("QSESS.BYUSER").arg(user_id).query(self.connection).unwrap()
    }

    /// `QSESS.BYUSER uid WITHMETA`: one record's fields per live session.
    pub(crate) fn byuser_with_meta(&mut self, user_id: &str) -> Vec<RecordFields> {
        match self.reply("QSESS.BYUSER", user_id, &["WITHMETA"]) {
            Value::Array(sessions) => sessions
                .into_iter()
                .map(|session| ordered_record_fields(session, "QSESS.BYUSER").expect("BYUSER lists no nil sessions"))
                .collect(),
            other => panic!("QSESS.BYUSER {user_id} WITHMETA replied {other:?}"),
        }
    }

    fn reply(&mut self, command: &str, first: &str, rest: &[&str]) -> Value {
        redis::cmd(command)
            .arg(first)
            .arg(rest)
            .query(self.connection)
            .unwrap_or_else(|error| panic!("{command} {first} {rest:?} failed: {error}"))
    }
}

/// A record reply (a RESP3 map or its RESP2 flat field/value array) of `command` as ordered pairs,
/// or `None` for nil.
pub(crate) fn ordered_record_fields(reply: Value, command: &str) -> Option<RecordFields> {
    match reply {
        Value::Nil => None,
        Value::Map(pairs) => {
            Some(pairs.into_iter().map(|(field, value)| (text_of_field_name(&field), value)).collect())
        }
        Value::Array(items) => {
            assert_eq!(items.len() % 2, 0, "odd-length reply {items:?}");
            Some(items.chunks(2).map(|pair| (text_of_field_name(&pair[0]), pair[1].clone())).collect())
        }
        other => panic!("{command} replied {other:?}"),
    }
}

fn text_of_field_name(name: &Value) -> String {
    match name {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        Value::SimpleString(text) => text.clone(),
        other => panic!("field name is not a string: {other:?}"),
    }
}
