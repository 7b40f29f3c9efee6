//! Agencies as a tree whose levels come from the regulation profile, with name history,
//! merges, IP ranges, contacts and CSV import.

use crate::Soar;
use crate::audit::Actor;
use crate::clock::{from_ms, opt_from_ms, to_ms};
use crate::error::{Result, SoarError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::net::IpAddr;

/// One agency.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Agency {
    /// Id.
    pub id: i64,
    /// Stable code (e.g. `so-tt`, or the national `000.00.00.XXX` identifier).
    pub code: String,
    /// Current name.
    pub name: String,
    /// Level id from the profile.
    pub level: String,
    /// Parent agency.
    pub parent_id: Option<i64>,
    /// Set when merged into another agency.
    pub merged_into: Option<i64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A new agency.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgency {
    /// Stable code, unique.
    pub code: String,
    /// Name.
    pub name: String,
    /// Level id from the active profile.
    pub level: String,
    /// Parent agency (required unless the level is a root level).
    #[serde(default)]
    pub parent_id: Option<i64>,
}

/// A point of contact (đầu mối).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// `primary`, `backup` (ứng cứu sự cố) or `monitoring` (giám sát).
    pub kind: String,
    /// Full name.
    pub name: String,
    /// Position.
    #[serde(default)]
    pub position: String,
    /// Landline.
    #[serde(default)]
    pub phone: String,
    /// Mobile.
    #[serde(default)]
    pub mobile: String,
    /// E-mail.
    #[serde(default)]
    pub email: String,
}

/// An IP range of an agency.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IpRange {
    /// CIDR.
    pub cidr: String,
    /// A public (Internet) range; private, loopback and link-local ranges are refused for these.
    pub public: bool,
}

/// A past or present name.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NameRecord {
    /// The name.
    pub name: String,
    /// From.
    pub valid_from: DateTime<Utc>,
    /// Until (none for the current name).
    pub valid_to: Option<DateTime<Utc>>,
}

const COLS: &str = "id, code, name, level, parent_id, merged_into, created_at";

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Agency> {
    Ok(Agency {
        id: r.try_get("id")?,
        code: r.try_get("code")?,
        name: r.try_get("name")?,
        level: r.try_get("level")?,
        parent_id: r.try_get("parent_id")?,
        merged_into: r.try_get("merged_into")?,
        created_at: from_ms(r.try_get("created_at")?),
    })
}

fn json<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

fn is_public(net: &ipnet::IpNet) -> bool {
    match net.addr() {
        IpAddr::V4(a) => {
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            let seg = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || (seg & 0xfe00) == 0xfc00
                || (seg & 0xffc0) == 0xfe80
                || seg == 0x2001 && a.segments()[1] == 0x0db8)
        }
    }
}

impl Soar {
    /// Creates an agency; its level must exist in the active profile and fit under the parent's.
    pub async fn create_agency(&self, actor: &Actor, new: NewAgency) -> Result<Agency> {
        let code = new.code.trim();
        let name = new.name.trim();
        if code.is_empty() || name.is_empty() {
            return Err(SoarError::Invalid(
                "agency code and name are required".into(),
            ));
        }
        let profile = self.profiles().active().clone();
        let level = profile.level(&new.level).ok_or_else(|| {
            SoarError::Invalid(format!(
                "level {:?} is not defined by profile {}",
                new.level, profile.id
            ))
        })?;
        match new.parent_id {
            None if !level.parents.is_empty() => {
                return Err(SoarError::Invalid(format!(
                    "level {} needs a parent",
                    level.id
                )));
            }
            Some(pid) => {
                let parent = self.agency(pid).await?;
                if parent.merged_into.is_some() {
                    return Err(SoarError::Invalid(format!("agency {pid} was merged")));
                }
                if !level.parents.contains(&parent.level) {
                    return Err(SoarError::Invalid(format!(
                        "a {} cannot sit under a {}",
                        level.id, parent.level
                    )));
                }
            }
            None => {}
        }
        let now = to_ms(self.now());
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM agencies WHERE code = $1")
            .bind(code)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(SoarError::Conflict(format!(
                "agency code {code:?} already exists"
            )));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO agencies (code, name, level, parent_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(code)
        .bind(name)
        .bind(&new.level)
        .bind(new.parent_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query("INSERT INTO agency_names (agency_id, name, valid_from) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let agency = Agency {
            id,
            code: code.into(),
            name: name.into(),
            level: new.level,
            parent_id: new.parent_id,
            merged_into: None,
            created_at: from_ms(now),
        };
        self.audit(
            &mut tx,
            actor,
            "agency.create",
            "agency",
            id,
            None,
            json(&agency),
        )
        .await?;
        tx.commit().await?;
        Ok(agency)
    }

    /// One agency.
    pub async fn agency(&self, id: i64) -> Result<Agency> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM agencies WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| SoarError::not_found("agency", id))?;
        from_row(&row)
    }

    /// One agency by code.
    pub async fn agency_by_code(&self, code: &str) -> Result<Agency> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM agencies WHERE code = $1"))
            .bind(code)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| SoarError::not_found("agency", code))?;
        from_row(&row)
    }

    /// All agencies (merged ones included, flagged), ordered by id.
    pub async fn agencies(&self) -> Result<Vec<Agency>> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM agencies ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// The ids of `root` and every agency below it (merged agencies stay in their old subtree,
    /// so an old incident remains visible to the same viewers).
    pub async fn agency_subtree(&self, root: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "WITH RECURSIVE sub(id) AS (SELECT $1 UNION SELECT a.id FROM agencies a \
             JOIN sub ON a.parent_id = sub.id OR a.merged_into = sub.id) SELECT id FROM sub",
        )
        .bind(root)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(SoarError::from))
            .collect()
    }

    /// Renames an agency; the old name stays in its history.
    pub async fn rename_agency(&self, actor: &Actor, id: i64, name: &str) -> Result<Agency> {
        let name = name.trim();
        if name.is_empty() {
            return Err(SoarError::Invalid("agency name is required".into()));
        }
        let before = self.agency(id).await?;
        let now = to_ms(self.now());
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE agency_names SET valid_to = $1 WHERE agency_id = $2 AND valid_to IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO agency_names (agency_id, name, valid_from) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE agencies SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let after = Agency {
            name: name.into(),
            ..before.clone()
        };
        self.audit(
            &mut tx,
            actor,
            "agency.rename",
            "agency",
            id,
            json(&before),
            json(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Every name an agency has had, oldest first.
    pub async fn agency_names(&self, id: i64) -> Result<Vec<NameRecord>> {
        let rows = sqlx::query(
            "SELECT name, valid_from, valid_to FROM agency_names WHERE agency_id = $1 \
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NameRecord {
                    name: r.try_get(0)?,
                    valid_from: from_ms(r.try_get(1)?),
                    valid_to: opt_from_ms(r.try_get(2)?),
                })
            })
            .collect()
    }

    /// Merges `sources` into `target`: children and IP ranges move to the target, the sources
    /// are kept (flagged `merged_into`) so that past incidents keep their agency and name.
    pub async fn merge_agencies(&self, actor: &Actor, sources: &[i64], target: i64) -> Result<()> {
        let tgt = self.agency(target).await?;
        if tgt.merged_into.is_some() {
            return Err(SoarError::Invalid(format!(
                "target agency {target} was itself merged"
            )));
        }
        if sources.contains(&target) || sources.is_empty() {
            return Err(SoarError::Invalid(
                "merge needs sources other than the target".into(),
            ));
        }
        let mut tx = self.begin().await?;
        for &src in sources {
            let before = self.agency(src).await?;
            if before.merged_into.is_some() {
                return Err(SoarError::Invalid(format!(
                    "agency {src} was already merged"
                )));
            }
            let target_ancestors = self.agency_ancestors(target).await?;
            if target_ancestors.contains(&src) {
                return Err(SoarError::Invalid(format!(
                    "agency {src} is above the target; merge would make a cycle"
                )));
            }
            sqlx::query("UPDATE agencies SET parent_id = $1 WHERE parent_id = $2")
                .bind(target)
                .bind(src)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE agency_ranges SET agency_id = $1 WHERE agency_id = $2 AND cidr NOT IN \
                 (SELECT cidr FROM agency_ranges WHERE agency_id = $1)",
            )
            .bind(target)
            .bind(src)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM agency_ranges WHERE agency_id = $1")
                .bind(src)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE agencies SET merged_into = $1 WHERE id = $2")
                .bind(target)
                .bind(src)
                .execute(&mut *tx)
                .await?;
            let after = Agency {
                merged_into: Some(target),
                ..before.clone()
            };
            self.audit(
                &mut tx,
                actor,
                "agency.merge",
                "agency",
                src,
                json(&before),
                json(&after),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn agency_ancestors(&self, id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "WITH RECURSIVE up(id, parent_id) AS (SELECT id, parent_id FROM agencies WHERE id = $1 \
             UNION SELECT a.id, a.parent_id FROM agencies a JOIN up ON a.id = up.parent_id) \
             SELECT id FROM up",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(SoarError::from))
            .collect()
    }

    /// Registers an IP range for an agency.
    pub async fn add_agency_range(
        &self,
        actor: &Actor,
        id: i64,
        cidr: &str,
        public: bool,
    ) -> Result<IpRange> {
        let net: ipnet::IpNet = cidr
            .trim()
            .parse()
            .map_err(|_| SoarError::Invalid(format!("bad CIDR {cidr:?}")))?;
        if public && !is_public(&net) {
            return Err(SoarError::Invalid(format!(
                "{net} is not a public range (private, loopback, link-local or documentation)"
            )));
        }
        self.agency(id).await?;
        let range = IpRange {
            cidr: net.trunc().to_string(),
            public,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO agency_ranges (agency_id, cidr, public) VALUES ($1, $2, $3) \
             ON CONFLICT (agency_id, cidr) DO UPDATE SET public = excluded.public",
        )
        .bind(id)
        .bind(&range.cidr)
        .bind(public)
        .execute(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            actor,
            "agency.add_range",
            "agency",
            id,
            None,
            json(&range),
        )
        .await?;
        tx.commit().await?;
        Ok(range)
    }

    /// The IP ranges of an agency.
    pub async fn agency_ranges(&self, id: i64) -> Result<Vec<IpRange>> {
        let rows = sqlx::query(
            "SELECT cidr, public FROM agency_ranges WHERE agency_id = $1 ORDER BY cidr",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IpRange {
                    cidr: r.try_get(0)?,
                    public: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Removes an IP range from an agency.
    pub async fn remove_agency_range(&self, actor: &Actor, id: i64, cidr: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "DELETE FROM agency_ranges WHERE agency_id = $1 AND cidr = $2 RETURNING public",
        )
        .bind(id)
        .bind(cidr.trim())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| SoarError::not_found("agency range", cidr.trim()))?;
        let range = IpRange {
            cidr: cidr.trim().to_owned(),
            public: row.try_get(0)?,
        };
        self.audit(
            &mut tx,
            actor,
            "agency.remove_range",
            "agency",
            id,
            json(&range),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The agency owning `ip`: the most specific registered range wins.
    pub async fn agency_for_ip(&self, ip: IpAddr) -> Result<Option<i64>> {
        let rows = sqlx::query("SELECT agency_id, cidr FROM agency_ranges")
            .fetch_all(&self.pool)
            .await?;
        let mut best: Option<(u8, i64)> = None;
        for r in &rows {
            let cidr: String = r.try_get(1)?;
            let Ok(net) = cidr.parse::<ipnet::IpNet>() else {
                continue;
            };
            if net.contains(&ip) && best.is_none_or(|(len, _)| net.prefix_len() > len) {
                best = Some((net.prefix_len(), r.try_get(0)?));
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Adds a contact; a contact needs a name and a phone, mobile or e-mail. A new
    /// incident-response contact (primary or backup) opens the R-14 update task, due 24 h later.
    pub async fn add_agency_contact(&self, actor: &Actor, id: i64, c: Contact) -> Result<i64> {
        crate::system::check_contact(&c)?;
        self.agency(id).await?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let cid: i64 = sqlx::query(
            "INSERT INTO agency_contacts (agency_id, kind, name, position, phone, mobile, email, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(id)
        .bind(&c.kind)
        .bind(&c.name)
        .bind(&c.position)
        .bind(&c.phone)
        .bind(&c.mobile)
        .bind(&c.email)
        .bind(to_ms(now))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        self.audit(
            &mut tx,
            actor,
            "agency.add_contact",
            "agency",
            id,
            None,
            json(&c),
        )
        .await?;
        if c.kind == "primary" || c.kind == "backup" {
            self.open_contact_task(&mut tx, actor, id, &c, now).await?;
        }
        tx.commit().await?;
        Ok(cid)
    }

    /// The contacts of an agency.
    pub async fn agency_contacts(&self, id: i64) -> Result<Vec<Contact>> {
        let rows = sqlx::query(
            "SELECT kind, name, position, phone, mobile, email FROM agency_contacts \
             WHERE agency_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Contact {
                    kind: r.try_get(0)?,
                    name: r.try_get(1)?,
                    position: r.try_get(2)?,
                    phone: r.try_get(3)?,
                    mobile: r.try_get(4)?,
                    email: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Imports agencies from CSV with the header `code,name,level,parent_code,public_cidrs`
    /// (CIDRs separated by spaces or `;`). Parents must appear before their children. Rows whose
    /// code already exists are skipped. Returns the number of agencies created.
    pub async fn import_agencies_csv(&self, actor: &Actor, data: &[u8]) -> Result<usize> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(data);
        let headers = reader
            .headers()
            .map_err(|e| SoarError::Invalid(format!("agency CSV header: {e}")))?
            .clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| SoarError::Invalid(format!("agency CSV: missing column {name}")))
        };
        let (c_code, c_name, c_level) = (col("code")?, col("name")?, col("level")?);
        let c_parent = headers.iter().position(|h| h == "parent_code");
        let c_cidrs = headers.iter().position(|h| h == "public_cidrs");
        let mut created = 0;
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec =
                rec.map_err(|e| SoarError::Invalid(format!("agency CSV line {line}: {e}")))?;
            let get = |c: usize| rec.get(c).unwrap_or("").to_owned();
            let code = get(c_code);
            if self.agency_by_code(&code).await.is_ok() {
                continue;
            }
            let parent_code = c_parent.map(get).unwrap_or_default();
            let parent_id = if parent_code.is_empty() {
                None
            } else {
                Some(
                    self.agency_by_code(&parent_code)
                        .await
                        .map_err(|_| {
                            SoarError::Invalid(format!(
                                "agency CSV line {line}: unknown parent_code {parent_code:?}"
                            ))
                        })?
                        .id,
                )
            };
            let new = NewAgency {
                code,
                name: get(c_name),
                level: get(c_level),
                parent_id,
            };
            let agency = self.create_agency(actor, new).await.map_err(|e| match e {
                SoarError::Invalid(m) => SoarError::Invalid(format!("agency CSV line {line}: {m}")),
                other => other,
            })?;
            for cidr in c_cidrs.map(get).unwrap_or_default().split([' ', ';']) {
                if !cidr.is_empty() {
                    self.add_agency_range(actor, agency.id, cidr, true)
                        .await
                        .map_err(|e| match e {
                            SoarError::Invalid(m) => {
                                SoarError::Invalid(format!("agency CSV line {line}: {m}"))
                            }
                            other => other,
                        })?;
                }
            }
            created += 1;
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ranges_exclude_private_ones() {
        for (cidr, public) in [
            ("10.0.0.0/8", false),
            ("192.168.1.0/24", false),
            ("100.64.0.0/10", false),
            ("127.0.0.1/32", false),
            ("fd00::/8", false),
            ("fe80::/10", false),
            ("203.113.128.0/20", true),
            ("2402:800::/32", true),
        ] {
            let net: ipnet::IpNet = cidr.parse().unwrap();
            assert_eq!(is_public(&net), public, "{cidr}");
        }
    }
}
