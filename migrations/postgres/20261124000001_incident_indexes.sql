-- Incident analysis without scanning the log: the streams that name a user (sessions,
-- authorization requests, client grants), and the realm and client streams whose names the
-- audit records carry. Partial indexes: only these event types pay for them.
CREATE INDEX events_naming_user ON events (((payload::jsonb) ->> 'user_id'))
    WHERE event_type IN ('session.started', 'auth_request.authenticated', 'auth_request.credentials_rejected', 'client_grant.issued');
CREATE INDEX events_directory ON events (position) WHERE stream_type IN ('realm', 'client');
