//! The schema of both backends, as one list of steps.
//!
//! Step N (counting from 1) leads a database to schema version N. Each step has
//! its SQLite text and its PostgreSQL text, which make the same tables, columns
//! and indexes, so the shared queries (`certificates.rs`, `acme_sql.rs`) read
//! the same on both. A new step goes at the end of the list; a step once
//! released never changes, or databases already past it would differ from new ones.
//!
//! Where the two differ: SQLite tables are STRICT with INTEGER and BLOB, and
//! order rows by their implicit `rowid`; PostgreSQL has BIGINT, BYTEA and BOOLEAN,
//! and the tables that are listed in insertion order get an identity column
//! named `rowid`, so that `ORDER BY created_at, rowid` means the same on both.

/// One schema change, written for each backend.
pub(crate) struct Migration {
    /// The change as SQLite statements.
    pub(crate) sqlite: &'static str,
    /// The same change as PostgreSQL statements.
    pub(crate) postgres: &'static str,
}

/// The steps, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        sqlite: r#"
CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY NOT NULL,
    issuer            TEXT NOT NULL,
    profile           TEXT NOT NULL,
    subject           TEXT NOT NULL,
    common_name       TEXT NOT NULL,
    sans              TEXT NOT NULL,
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    der               BLOB NOT NULL,
    issued_at         INTEGER NOT NULL,
    revoked_at        INTEGER,
    revocation_reason INTEGER
) STRICT;
CREATE INDEX certificates_revoked ON certificates (issuer, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE crl_numbers (
    issuer TEXT PRIMARY KEY NOT NULL,
    last   INTEGER NOT NULL
) STRICT;
"#,
        postgres: r#"
CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY NOT NULL,
    rowid             BIGINT GENERATED ALWAYS AS IDENTITY,
    issuer            TEXT NOT NULL,
    profile           TEXT NOT NULL,
    subject           TEXT NOT NULL,
    common_name       TEXT NOT NULL,
    sans              TEXT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    der               BYTEA NOT NULL,
    issued_at         BIGINT NOT NULL,
    revoked_at        BIGINT,
    revocation_reason BIGINT
);
CREATE INDEX certificates_revoked ON certificates (issuer, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE crl_numbers (
    issuer TEXT PRIMARY KEY NOT NULL,
    last   BIGINT NOT NULL
);
"#,
    },
    Migration {
        sqlite: r#"
ALTER TABLE certificates ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1;
CREATE INDEX certificates_undelivered ON certificates (common_name) WHERE delivered = 0;
"#,
        postgres: r#"
ALTER TABLE certificates ADD COLUMN delivered BOOLEAN NOT NULL DEFAULT TRUE;
CREATE INDEX certificates_undelivered ON certificates (common_name) WHERE NOT delivered;
"#,
    },
    Migration {
        sqlite: r#"
ALTER TABLE certificates ADD COLUMN source TEXT;
CREATE TABLE acme_nonces (
    nonce   TEXT PRIMARY KEY NOT NULL,
    expires INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE acme_accounts (
    id         TEXT PRIMARY KEY NOT NULL,
    thumbprint TEXT NOT NULL UNIQUE,
    jwk        TEXT NOT NULL,
    contact    TEXT NOT NULL,
    status     TEXT NOT NULL,
    eab_kid    TEXT,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE acme_orders (
    id                 TEXT PRIMARY KEY NOT NULL,
    account_id         TEXT NOT NULL REFERENCES acme_accounts (id),
    status             TEXT NOT NULL,
    identifiers        TEXT NOT NULL,
    authorizations     TEXT NOT NULL,
    not_before         INTEGER,
    not_after          INTEGER,
    profile            TEXT,
    replaces           TEXT,
    expires            INTEGER NOT NULL,
    error              TEXT,
    certificate_serial TEXT,
    created_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);
CREATE INDEX acme_orders_certificate ON acme_orders (certificate_serial) WHERE certificate_serial IS NOT NULL;
CREATE TABLE acme_authorizations (
    id               TEXT PRIMARY KEY NOT NULL,
    account_id       TEXT NOT NULL REFERENCES acme_accounts (id),
    identifier_type  TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    wildcard         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    expires          INTEGER NOT NULL
) STRICT;
CREATE INDEX acme_authorizations_reuse
    ON acme_authorizations (account_id, identifier_type, identifier_value, wildcard, status);
CREATE TABLE acme_challenges (
    id               TEXT PRIMARY KEY NOT NULL,
    authorization_id TEXT NOT NULL REFERENCES acme_authorizations (id),
    position         INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    token            TEXT NOT NULL,
    status           TEXT NOT NULL,
    validated_at     INTEGER,
    failed_at        INTEGER,
    error            TEXT
) STRICT;
CREATE INDEX acme_challenges_authorization ON acme_challenges (authorization_id, position);
CREATE TABLE acme_eab_keys (
    kid        TEXT PRIMARY KEY NOT NULL,
    label      TEXT NOT NULL,
    hmac_key   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    account_id TEXT
) STRICT;
"#,
        postgres: r#"
ALTER TABLE certificates ADD COLUMN source TEXT;
CREATE TABLE acme_nonces (
    nonce   TEXT PRIMARY KEY NOT NULL,
    expires BIGINT NOT NULL
);
CREATE TABLE acme_accounts (
    id         TEXT PRIMARY KEY NOT NULL,
    thumbprint TEXT NOT NULL UNIQUE,
    jwk        TEXT NOT NULL,
    contact    TEXT NOT NULL,
    status     TEXT NOT NULL,
    eab_kid    TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE acme_orders (
    id                 TEXT PRIMARY KEY NOT NULL,
    rowid              BIGINT GENERATED ALWAYS AS IDENTITY,
    account_id         TEXT NOT NULL REFERENCES acme_accounts (id),
    status             TEXT NOT NULL,
    identifiers        TEXT NOT NULL,
    authorizations     TEXT NOT NULL,
    not_before         BIGINT,
    not_after          BIGINT,
    profile            TEXT,
    replaces           TEXT,
    expires            BIGINT NOT NULL,
    error              TEXT,
    certificate_serial TEXT,
    created_at         BIGINT NOT NULL
);
CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);
CREATE INDEX acme_orders_certificate ON acme_orders (certificate_serial) WHERE certificate_serial IS NOT NULL;
CREATE TABLE acme_authorizations (
    id               TEXT PRIMARY KEY NOT NULL,
    account_id       TEXT NOT NULL REFERENCES acme_accounts (id),
    identifier_type  TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    wildcard         BOOLEAN NOT NULL,
    status           TEXT NOT NULL,
    expires          BIGINT NOT NULL
);
CREATE INDEX acme_authorizations_reuse
    ON acme_authorizations (account_id, identifier_type, identifier_value, wildcard, status);
CREATE TABLE acme_challenges (
    id               TEXT PRIMARY KEY NOT NULL,
    authorization_id TEXT NOT NULL REFERENCES acme_authorizations (id),
    position         BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    token            TEXT NOT NULL,
    status           TEXT NOT NULL,
    validated_at     BIGINT,
    failed_at        BIGINT,
    error            TEXT
);
CREATE INDEX acme_challenges_authorization ON acme_challenges (authorization_id, position);
CREATE TABLE acme_eab_keys (
    kid        TEXT PRIMARY KEY NOT NULL,
    rowid      BIGINT GENERATED ALWAYS AS IDENTITY,
    label      TEXT NOT NULL,
    hmac_key   BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    account_id TEXT
);
"#,
    },
    // The revocation change log (`revocation_log.rs`): every change of a certificate's
    // revocation state, numbered from the one-row counter `revocation_sequence`.
    Migration {
        sqlite: r#"
CREATE TABLE revocation_sequence (
    one  INTEGER PRIMARY KEY NOT NULL CHECK (one = 1),
    last INTEGER NOT NULL
) STRICT;
INSERT INTO revocation_sequence (one, last) VALUES (1, 0);
CREATE TABLE revocation_changes (
    sequence INTEGER PRIMARY KEY NOT NULL,
    issuer   TEXT NOT NULL,
    serial   TEXT NOT NULL,
    revoked  INTEGER NOT NULL
) STRICT;
CREATE INDEX revocation_changes_issuer ON revocation_changes (issuer, sequence);
"#,
        postgres: r#"
CREATE TABLE revocation_sequence (
    one  BIGINT PRIMARY KEY NOT NULL CHECK (one = 1),
    last BIGINT NOT NULL
);
INSERT INTO revocation_sequence (one, last) VALUES (1, 0);
CREATE TABLE revocation_changes (
    sequence BIGINT PRIMARY KEY NOT NULL,
    issuer   TEXT NOT NULL,
    serial   TEXT NOT NULL,
    revoked  BOOLEAN NOT NULL
);
CREATE INDEX revocation_changes_issuer ON revocation_changes (issuer, sequence);
"#,
    },
    // The CA's own files (`ca_files.rs`): its certificates, settings, and its keys
    // encrypted or named in a token, so every instance on the database can issue.
    Migration {
        sqlite: r#"
CREATE TABLE ca_files (
    name     TEXT PRIMARY KEY NOT NULL,
    contents BLOB NOT NULL,
    private  INTEGER NOT NULL
) STRICT;
"#,
        postgres: r#"
CREATE TABLE ca_files (
    name     TEXT PRIMARY KEY NOT NULL,
    contents BYTEA NOT NULL,
    private  BOOLEAN NOT NULL
);
"#,
    },
    // Site certificates stored once for every gateway (`site_certificates.rs`), and the
    // leases that let one instance at a time renew one (`leases.rs`). Times in unix
    // milliseconds; a lease's are read from the database's clock, never an instance's.
    Migration {
        sqlite: r#"
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    fencing    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE TABLE site_certificates (
    name       TEXT PRIMARY KEY NOT NULL,
    chain_pem  TEXT NOT NULL,
    key_pem    TEXT NOT NULL,
    not_after  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    lease      TEXT NOT NULL,
    fencing    INTEGER NOT NULL
) STRICT;
"#,
        postgres: r#"
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    fencing    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE site_certificates (
    name       TEXT PRIMARY KEY NOT NULL,
    chain_pem  TEXT NOT NULL,
    key_pem    TEXT NOT NULL,
    not_after  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lease      TEXT NOT NULL,
    fencing    BIGINT NOT NULL
);
"#,
    },
    // The ACME client's shared state (`acme_client.rs`): the answers to http-01 and
    // tls-alpn-01 challenges while an order waits (transient; expiry in unix
    // milliseconds by the database's clock), and the client's accounts, their keys
    // encrypted by the caller.
    Migration {
        sqlite: r#"
CREATE TABLE acme_client_answers (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    identifier TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT;
CREATE TABLE acme_client_accounts (
    directory   TEXT NOT NULL,
    name        TEXT NOT NULL,
    account_url TEXT NOT NULL,
    key_pem     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (directory, name)
) STRICT;
"#,
        postgres: r#"
CREATE TABLE acme_client_answers (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    identifier TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE acme_client_accounts (
    directory   TEXT NOT NULL,
    name        TEXT NOT NULL,
    account_url TEXT NOT NULL,
    key_pem     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (directory, name)
);
"#,
    },
];

/// What opening a database did to its schema: the version it found (0 for a new
/// database) and the version it left, this build's newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersions {
    /// The version found.
    pub before: i64,
    /// The version left.
    pub after: i64,
}

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// The steps that lead a database from schema version `found` to [`latest`],
/// with the version each leads to; [`SchemaTooNew`](crate::StoreError::SchemaTooNew)
/// when `found` is past it (a newer gatehouse wrote the database).
pub(crate) fn pending(found: i64) -> crate::Result<impl Iterator<Item = (i64, &'static Migration)>> {
    let known = latest();
    if found > known {
        return Err(crate::StoreError::SchemaTooNew { found, known });
    }
    Ok(MIGRATIONS.iter().zip(1..).skip(found.max(0) as usize).map(|(step, version)| (version, step)))
}
