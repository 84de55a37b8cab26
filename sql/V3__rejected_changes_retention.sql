-- Refused changes are no longer kept forever: the daemon's purge timer erases their payload and later
-- deletes them. The payload (`fields`, which for a `set` holds the whole session record: data, IP, user
-- agent) is erased --purge-grace after the session it concerns would have expired, the rule rows of
-- qsess.sessions follow, so a rejected change never keeps a session's data longer than its row would;
-- the rest of the row (stream, entry id, handle, op, version, error) stays for --rejected-retention
-- after the rejection (7 days by default), for an operator to see what was refused and why.

alter table qsess.rejected_changes add column session_expires_at timestamptz;
alter table qsess.rejected_changes add column payload_erased_at timestamptz;

comment on column qsess.rejected_changes.session_expires_at is 'when the session the change concerns would expire, as the change says; null when it says nothing (a del, or an entry that could not be read)';
comment on column qsess.rejected_changes.payload_erased_at is 'when fields was erased by the purge: --purge-grace after session_expires_at (or after rejected_at when that is null)';

-- The purge deletes by age.
create index rejected_changes_by_time on qsess.rejected_changes (rejected_at);
