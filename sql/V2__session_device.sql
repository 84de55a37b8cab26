-- The device a session was made from, as people read it ("Firefox 120 on Linux", "Safari 17 on iPhone"),
-- summarised from the user agent by qsess; it stays when qsess.ua-mode none keeps no user agent.
-- location and country (from qsess.geoip-db) have been columns since V1.

alter table qsess.sessions add column device text;

comment on column qsess.sessions.device is 'browser and system summarised from the user agent, e.g. "Firefox 120 on Linux"; kept even when the user agent is not (qsess.ua-mode none)';
comment on column qsess.sessions.location is '"City, Country" (or the country alone) from the MaxMind database qsess.geoip-db, looked up on the full address before qsess.ip-mode truncates or drops it';
comment on column qsess.sessions.country is 'ISO 3166-1 alpha-2 code of the location';

-- Sessions still valid now, with the device; the columns V1 listed keep their order.
create or replace view qsess.live_sessions as
select handle, user_id, ip, user_agent, location, country, created_at, updated_at, last_seen, expires_at,
       absolute_expires_at, data, version, device
from qsess.sessions
where ended_at is null and expires_at > now();
