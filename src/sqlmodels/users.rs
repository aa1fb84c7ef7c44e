//! The `users` SQL read model: applying its row changes, and the queries that answer who a
//! user is (by id, username, email, search) and what they hold (roles, groups).
use super::{pg, SqlModelError};
use crate::store::DbPool;
use annals_projections::users::{key, search_tail, UserChange, UserView, SEARCH_SEPARATOR};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub(super) const INSERT: &str = "INSERT INTO rm_users (user_id, realm_id, username, username_key, email_key, search, \
     position, created_ms, federation_link, profile, password, password_temporary, extra) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT (user_id) DO NOTHING";
pub(super) const PROFILE: &str =
    "UPDATE rm_users SET email_key = ?, search = username_key || ?, profile = ? WHERE user_id = ?";
pub(super) const PASSWORD: &str =
    "UPDATE rm_users SET password = ?, password_temporary = COALESCE(?, password_temporary) WHERE user_id = ?";
pub(super) const DELETE: [&str; 3] = [
    "DELETE FROM rm_users WHERE user_id = ?",
    "DELETE FROM rm_user_roles WHERE user_id = ?",
    "DELETE FROM rm_user_groups WHERE user_id = ?",
];
pub(super) const GRANT: &str = "INSERT INTO rm_user_roles (user_id, role_id) VALUES (?, ?) ON CONFLICT DO NOTHING";
pub(super) const REVOKE: &str = "DELETE FROM rm_user_roles WHERE user_id = ? AND role_id = ?";
pub(super) const JOIN: &str = "INSERT INTO rm_user_groups (user_id, group_id) VALUES (?, ?) ON CONFLICT DO NOTHING";
pub(super) const LEAVE: &str = "DELETE FROM rm_user_groups WHERE user_id = ? AND group_id = ?";
pub(super) const ROLE_DELETED: &str = "DELETE FROM rm_user_roles WHERE role_id = ?";
pub(super) const GROUP_DELETED: &str = "DELETE FROM rm_user_groups WHERE group_id = ?";
pub(super) const TABLES: [&str; 3] = ["rm_users", "rm_user_roles", "rm_user_groups"];

fn json<T: serde::Serialize>(v: &T) -> Result<String, SqlModelError> {
    serde_json::to_string(v).map_err(|e| SqlModelError::Row(e.to_string()))
}

/// A bind value of a statement.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Arg {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    Bool(bool),
    MaybeBool(Option<bool>),
}

/// The statements (with `?` placeholders) and binds that apply one change, in order.
pub(super) fn statements(change: UserChange) -> Result<Vec<(&'static str, Vec<Arg>)>, SqlModelError> {
    use Arg::*;
    Ok(match change {
        UserChange::Insert { user, position } => {
            let username_key = key(&user.username);
            let search = format!("{username_key}{}", search_tail(&user.profile));
            vec![(
                INSERT,
                vec![
                    Text(user.id),
                    Text(user.realm_id),
                    Text(user.username),
                    Text(username_key),
                    MaybeText(user.profile.email.as_deref().map(key)),
                    Text(search),
                    Int(position as i64),
                    Int(user.created_timestamp),
                    MaybeText(user.federation_link),
                    Text(json(&user.profile)?),
                    Bool(false),
                    Text(json(&user.extra)?),
                ],
            )]
        }
        UserChange::Profile { user_id, profile } => vec![(
            PROFILE,
            vec![
                MaybeText(profile.email.as_deref().map(key)),
                Text(search_tail(&profile)),
                Text(json(&profile)?),
                Text(user_id),
            ],
        )],
        UserChange::Password { user_id, hash, temporary } => {
            vec![(PASSWORD, vec![Text(json(&hash)?), MaybeBool(temporary), Text(user_id)])]
        }
        UserChange::Delete { user_id } => DELETE.iter().map(|sql| (*sql, vec![Text(user_id.clone())])).collect(),
        UserChange::GrantRole { user_id, role_id } => vec![(GRANT, vec![Text(user_id), Text(role_id)])],
        UserChange::RevokeRole { user_id, role_id } => vec![(REVOKE, vec![Text(user_id), Text(role_id)])],
        UserChange::JoinGroup { user_id, group_id } => vec![(JOIN, vec![Text(user_id), Text(group_id)])],
        UserChange::LeaveGroup { user_id, group_id } => vec![(LEAVE, vec![Text(user_id), Text(group_id)])],
        UserChange::RoleDeleted { role_id } => vec![(ROLE_DELETED, vec![Text(role_id)])],
        UserChange::GroupDeleted { group_id } => vec![(GROUP_DELETED, vec![Text(group_id)])],
    })
}

const COLUMNS: &str =
    "user_id, realm_id, username, created_ms, federation_link, profile, password, password_temporary, extra";

/// Runs a query on either backend and maps every row (`$q` is the query to bind to, `$r` a
/// row of the backend's own type).
macro_rules! rows {
    ($pool:expr, $sql:expr, |$q:ident| $bind:expr, |$r:ident| $map:expr) => {{
        match $pool {
            DbPool::Sqlite(p) => {
                let $q = sqlx::query($sql);
                $bind.fetch_all(p).await?.iter().map(|$r| $map).collect::<Result<Vec<_>, SqlModelError>>()
            }
            DbPool::Postgres(p) => {
                let sql = pg($sql);
                let $q = sqlx::query(&sql);
                $bind.fetch_all(p).await?.iter().map(|$r| $map).collect::<Result<Vec<_>, SqlModelError>>()
            }
        }
    }};
}

fn parse<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, SqlModelError> {
    serde_json::from_str(text).map_err(|e| SqlModelError::Row(format!("rm_users.{column}: {e}")))
}

/// Decodes a row selected with [`COLUMNS`].
macro_rules! view {
    ($r:expr) => {{
        let password: Option<String> = $r.try_get(6)?;
        Ok(UserView {
            id: $r.try_get(0)?,
            realm_id: $r.try_get(1)?,
            username: $r.try_get(2)?,
            created_timestamp: $r.try_get(3)?,
            federation_link: $r.try_get(4)?,
            profile: parse("profile", $r.try_get::<&str, _>(5)?)?,
            password: password.map(|p| parse("password", &p)).transpose()?,
            password_temporary: $r.try_get(7)?,
            extra: parse("extra", $r.try_get::<&str, _>(8)?)?,
        })
    }};
}

pub async fn get(pool: &DbPool, user_id: &str) -> Result<Option<UserView>, SqlModelError> {
    let sql = format!("SELECT {COLUMNS} FROM rm_users WHERE user_id = ?");
    Ok(rows!(pool, &sql, |q| q.bind(user_id), |r| view!(r))?.pop())
}

/// The user of a realm with this username, ignoring case (the first created, should two
/// share it).
pub async fn by_username(pool: &DbPool, realm_id: &str, username: &str) -> Result<Option<UserView>, SqlModelError> {
    let sql =
        format!("SELECT {COLUMNS} FROM rm_users WHERE realm_id = ? AND username_key = ? ORDER BY position LIMIT 1");
    Ok(rows!(pool, &sql, |q| q.bind(realm_id).bind(key(username)), |r| view!(r))?.pop())
}

/// The users of a realm with this email, ignoring case (several only where the realm allows
/// duplicate emails), oldest first.
pub async fn by_email(pool: &DbPool, realm_id: &str, email: &str) -> Result<Vec<UserView>, SqlModelError> {
    let sql = format!("SELECT {COLUMNS} FROM rm_users WHERE realm_id = ? AND email_key = ? ORDER BY position");
    rows!(pool, &sql, |q| q.bind(realm_id).bind(key(email)), |r| view!(r))
}

/// Escapes LIKE wildcards so a search term matches literally; the separator between fields
/// cannot be searched for.
fn like_pattern(needle: &str) -> String {
    let mut p = String::from("%");
    for c in key(needle).chars().filter(|c| *c != SEARCH_SEPARATOR) {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Users of a realm whose username, email, first or last name contains `needle` (ignoring
/// case; an empty needle lists all), ordered by username, paged like Keycloak's `first`/`max`
/// (at most 1,000 per page).
pub async fn search(
    pool: &DbPool,
    realm_id: &str,
    needle: &str,
    first: u32,
    max: u32,
) -> Result<Vec<UserView>, SqlModelError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rm_users WHERE realm_id = ? AND search LIKE ? ESCAPE '\\' \
         ORDER BY username_key, user_id LIMIT ? OFFSET ?"
    );
    let pat = like_pattern(needle);
    rows!(pool, &sql, |q| q.bind(realm_id).bind(&pat).bind(max.min(1000) as i64).bind(first as i64), |r| view!(r))
}

/// How many users a realm has (all realms with `None`).
pub async fn count(pool: &DbPool, realm_id: Option<&str>) -> Result<u64, SqlModelError> {
    let n: Vec<i64> = match realm_id {
        Some(realm) => {
            rows!(pool, "SELECT COUNT(*) FROM rm_users WHERE realm_id = ?", |q| q.bind(realm), |r| Ok(r.try_get(0)?))?
        }
        None => rows!(pool, "SELECT COUNT(*) FROM rm_users", |q| q, |r| Ok(r.try_get(0)?))?,
    };
    Ok(n.first().copied().unwrap_or(0) as u64)
}

/// Direct role grants plus group memberships, over all users.
pub async fn grant_count(pool: &DbPool) -> Result<u64, SqlModelError> {
    let sql = "SELECT (SELECT COUNT(*) FROM rm_user_roles) + (SELECT COUNT(*) FROM rm_user_groups)";
    let n: Vec<i64> = rows!(pool, sql, |q| q, |r| Ok(r.try_get(0)?))?;
    Ok(n.first().copied().unwrap_or(0) as u64)
}

/// Every user id, for an import that must not reuse one.
pub async fn all_ids(pool: &DbPool) -> Result<HashSet<String>, SqlModelError> {
    let ids: Vec<String> = rows!(pool, "SELECT user_id FROM rm_users", |q| q, |r| Ok(r.try_get(0)?))?;
    Ok(ids.into_iter().collect())
}

/// Roles granted to the user directly.
pub async fn roles_of(pool: &DbPool, user_id: &str) -> Result<BTreeSet<String>, SqlModelError> {
    let ids: Vec<String> =
        rows!(pool, "SELECT role_id FROM rm_user_roles WHERE user_id = ?", |q| q.bind(user_id), |r| Ok(r.try_get(0)?))?;
    Ok(ids.into_iter().collect())
}

/// Groups the user is a direct member of.
pub async fn groups_of(pool: &DbPool, user_id: &str) -> Result<BTreeSet<String>, SqlModelError> {
    let sql = "SELECT group_id FROM rm_user_groups WHERE user_id = ?";
    let ids: Vec<String> = rows!(pool, sql, |q| q.bind(user_id), |r| Ok(r.try_get(0)?))?;
    Ok(ids.into_iter().collect())
}

/// Direct members of a group.
pub async fn members_of(pool: &DbPool, group_id: &str) -> Result<BTreeSet<String>, SqlModelError> {
    let sql = "SELECT user_id FROM rm_user_groups WHERE group_id = ?";
    let ids: Vec<String> = rows!(pool, sql, |q| q.bind(group_id), |r| Ok(r.try_get(0)?))?;
    Ok(ids.into_iter().collect())
}

/// A user with their direct roles and groups, as an export writes them.
#[derive(Clone, Debug, PartialEq)]
pub struct UserWithGrants {
    pub user: UserView,
    pub roles: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

/// Every user of a realm with their grants, ordered by username (three queries, however
/// many users).
pub async fn realm_users(pool: &DbPool, realm_id: &str) -> Result<Vec<UserWithGrants>, SqlModelError> {
    let sql = format!("SELECT {COLUMNS} FROM rm_users WHERE realm_id = ?");
    let mut users: Vec<UserView> = rows!(pool, &sql, |q| q.bind(realm_id), |r| view!(r))?;
    // Sorted here, by bytes: PostgreSQL would order by the database's collation.
    users.sort_by(|a, b| a.username.cmp(&b.username).then_with(|| a.id.cmp(&b.id)));
    let mut grants: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (i, table, column) in [(0, "rm_user_roles", "role_id"), (1, "rm_user_groups", "group_id")] {
        let sql = format!(
            "SELECT g.user_id, g.{column} FROM {table} g JOIN rm_users u ON u.user_id = g.user_id WHERE u.realm_id = ?"
        );
        let pairs: Vec<(String, String)> =
            rows!(pool, &sql, |q| q.bind(realm_id), |r| Ok((r.try_get(0)?, r.try_get(1)?)))?;
        for (user, id) in pairs {
            let entry = grants.entry(user).or_default();
            if i == 0 { &mut entry.0 } else { &mut entry.1 }.insert(id);
        }
    }
    Ok(users
        .into_iter()
        .map(|user| {
            let (roles, groups) = grants.remove(&user.id).unwrap_or_default();
            UserWithGrants { user, roles, groups }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_match_literally() {
        assert_eq!(like_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
        assert_eq!(like_pattern("a\u{1f}b"), "%ab%", "the field separator is not searchable");
    }
}
