//! Per agency: domains, information systems (security level 1–5, owner, operator, Internet
//! uplinks), contact changes and the follow-up tasks they open (R-14: the national centre is to
//! be told of a new incident-response contact within 24 h), and CSV import of contacts,
//! systems and domains.

use crate::Soar;
use crate::agency::Contact;
use crate::audit::Actor;
use crate::clock::{from_ms, opt_from_ms, to_ms};
use crate::error::{Result, SoarError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// Hours within which a changed incident-response contact must be reported (TT20 Đ6.1.b).
pub const CONTACT_UPDATE_HOURS: i64 = 24;

/// Kind of the agency task opened by a contact change.
pub const CONTACT_UPDATE_TASK: &str = "contact_update";

/// An Internet uplink of an information system.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// Connectivity provider (ISP, the government data network…).
    pub provider: String,
    /// Address block of the link, when known.
    #[serde(default)]
    pub cidr: Option<String>,
}

/// An information system as given by the caller.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewSystem {
    /// Name, unique within the agency.
    pub name: String,
    /// Security level 1–5 (cấp độ, NĐ 85/2016).
    pub level: i64,
    /// Owning body (chủ quản); empty when it is the agency itself.
    #[serde(default)]
    pub owner: String,
    /// Operating unit (đơn vị vận hành).
    #[serde(default)]
    pub operator: String,
    /// Internet uplinks.
    #[serde(default)]
    pub uplinks: Vec<Uplink>,
    /// Free text (purpose, services).
    #[serde(default)]
    pub description: String,
}

/// A stored information system.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InfoSystem {
    /// Id.
    pub id: i64,
    /// Agency.
    pub agency_id: i64,
    /// Name.
    pub name: String,
    /// Security level 1–5.
    pub level: i64,
    /// Owning body.
    pub owner: String,
    /// Operating unit.
    pub operator: String,
    /// Internet uplinks.
    pub uplinks: Vec<Uplink>,
    /// Free text.
    pub description: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A contact with its id.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoredContact {
    /// Id.
    pub id: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The contact.
    #[serde(flatten)]
    pub contact: Contact,
}

/// A follow-up task of an agency (not of an incident).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AgencyTask {
    /// Id.
    pub id: i64,
    /// Agency.
    pub agency_id: i64,
    /// Kind (`contact_update`).
    pub kind: String,
    /// Title.
    pub title: String,
    /// Due time.
    pub due_at: DateTime<Utc>,
    /// Done.
    pub done: bool,
    /// Opened.
    pub created_at: DateTime<Utc>,
    /// Done at.
    pub done_at: Option<DateTime<Utc>>,
}

/// What a CSV import holds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CsvKind {
    /// `code,name,level,parent_code,public_cidrs`.
    Agencies,
    /// `agency_code,kind,name,position,phone,mobile,email`.
    Contacts,
    /// `agency_code,name,level,owner,operator,uplinks,description` (uplinks as
    /// `provider=cidr` separated by `;`, the `=cidr` part optional).
    Systems,
    /// `agency_code,domain`.
    Domains,
}

impl CsvKind {
    /// Parses `agencies`, `contacts`, `systems` or `domains`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "agencies" => Ok(Self::Agencies),
            "contacts" => Ok(Self::Contacts),
            "systems" => Ok(Self::Systems),
            "domains" => Ok(Self::Domains),
            other => Err(SoarError::Invalid(format!(
                "unknown CSV kind {other:?} (agencies, contacts, systems, domains)"
            ))),
        }
    }
}

/// A domain name in canonical form: lower case, no trailing dot, LDH labels of 1–63 characters
/// (IDNs in their `xn--` form), at least two labels, at most 253 characters.
pub fn normalise_domain(s: &str) -> Result<String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = || SoarError::Invalid(format!("bad domain name {s:?}"));
    if d.is_empty() || d.len() > 253 || !d.contains('.') {
        return Err(bad());
    }
    for label in d.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad());
        }
    }
    Ok(d)
}

/// Parses uplinks written as `provider=cidr; provider2` (the CSV form).
pub fn parse_uplinks(s: &str) -> Result<Vec<Uplink>> {
    let mut out = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (provider, cidr) = match part.split_once('=') {
            Some((p, c)) => (p.trim(), Some(c.trim())),
            None => (part, None),
        };
        out.push(Uplink {
            provider: provider.to_owned(),
            cidr: cidr.filter(|c| !c.is_empty()).map(str::to_owned),
        });
    }
    check_uplinks(&mut out)?;
    Ok(out)
}

fn check_uplinks(uplinks: &mut [Uplink]) -> Result<()> {
    for u in uplinks {
        u.provider = u.provider.trim().to_owned();
        if u.provider.is_empty() {
            return Err(SoarError::Invalid("an uplink needs a provider".into()));
        }
        if let Some(c) = &u.cidr {
            let net: ipnet::IpNet = c
                .trim()
                .parse()
                .map_err(|_| SoarError::Invalid(format!("bad uplink CIDR {c:?}")))?;
            u.cidr = Some(net.trunc().to_string());
        }
    }
    Ok(())
}

fn check_system(s: &mut NewSystem) -> Result<()> {
    s.name = s.name.trim().to_owned();
    if s.name.is_empty() {
        return Err(SoarError::Invalid(
            "an information system needs a name".into(),
        ));
    }
    if !(1..=5).contains(&s.level) {
        return Err(SoarError::Invalid(format!(
            "security level {} is not 1 to 5",
            s.level
        )));
    }
    s.owner = s.owner.trim().to_owned();
    s.operator = s.operator.trim().to_owned();
    check_uplinks(&mut s.uplinks)
}

pub(crate) fn check_contact(c: &Contact) -> Result<()> {
    if !["primary", "backup", "monitoring"].contains(&c.kind.as_str()) {
        return Err(SoarError::Invalid(format!(
            "contact kind {:?} is unknown",
            c.kind
        )));
    }
    if c.name.trim().is_empty()
        || (c.phone.trim().is_empty() && c.mobile.trim().is_empty() && c.email.trim().is_empty())
    {
        return Err(SoarError::Invalid(
            "a contact needs a name and a phone, mobile or e-mail".into(),
        ));
    }
    Ok(())
}

const SYS_COLS: &str =
    "id, agency_id, name, level, owner, operator, uplinks, description, updated_at";

fn system_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<InfoSystem> {
    let uplinks: String = r.try_get("uplinks")?;
    Ok(InfoSystem {
        id: r.try_get("id")?,
        agency_id: r.try_get("agency_id")?,
        name: r.try_get("name")?,
        level: r.try_get("level")?,
        owner: r.try_get("owner")?,
        operator: r.try_get("operator")?,
        uplinks: serde_json::from_str(&uplinks)
            .map_err(|e| SoarError::Internal(format!("stored uplinks: {e}")))?,
        description: r.try_get("description")?,
        updated_at: from_ms(r.try_get("updated_at")?),
    })
}

fn task_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<AgencyTask> {
    Ok(AgencyTask {
        id: r.try_get("id")?,
        agency_id: r.try_get("agency_id")?,
        kind: r.try_get("kind")?,
        title: r.try_get("title")?,
        due_at: from_ms(r.try_get("due_at")?),
        done: r.try_get("done")?,
        created_at: from_ms(r.try_get("created_at")?),
        done_at: opt_from_ms(r.try_get("done_at")?),
    })
}

const TASK_COLS: &str = "id, agency_id, kind, title, due_at, done, created_at, done_at";

fn json<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

fn line_err(line: usize, e: SoarError) -> SoarError {
    match e {
        SoarError::Invalid(m) => SoarError::Invalid(format!("CSV line {line}: {m}")),
        SoarError::NotFound { kind, id } => {
            SoarError::Invalid(format!("CSV line {line}: {kind} {id} not found"))
        }
        other => other,
    }
}

impl Soar {
    // ---- domains ----

    /// Registers a domain of an agency (idempotent).
    pub async fn add_agency_domain(&self, actor: &Actor, id: i64, domain: &str) -> Result<String> {
        let d = normalise_domain(domain)?;
        self.agency(id).await?;
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO agency_domains (agency_id, domain, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (agency_id, domain) DO NOTHING",
        )
        .bind(id)
        .bind(&d)
        .bind(to_ms(self.now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            self.audit(
                &mut tx,
                actor,
                "agency.add_domain",
                "agency",
                id,
                None,
                Some(serde_json::json!({ "domain": d })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(d)
    }

    /// Removes a domain of an agency.
    pub async fn remove_agency_domain(&self, actor: &Actor, id: i64, domain: &str) -> Result<()> {
        let d = normalise_domain(domain)?;
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM agency_domains WHERE agency_id = $1 AND domain = $2")
            .bind(id)
            .bind(&d)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(SoarError::not_found("domain", d));
        }
        self.audit(
            &mut tx,
            actor,
            "agency.remove_domain",
            "agency",
            id,
            Some(serde_json::json!({ "domain": d })),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The domains of an agency, sorted.
    pub async fn agency_domains(&self, id: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT domain FROM agency_domains WHERE agency_id = $1 ORDER BY domain")
                .bind(id)
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(SoarError::from))
            .collect()
    }

    // ---- information systems ----

    /// Registers an information system of an agency.
    pub async fn add_system(&self, actor: &Actor, id: i64, mut s: NewSystem) -> Result<InfoSystem> {
        check_system(&mut s)?;
        self.agency(id).await?;
        let uplinks = serde_json::to_string(&s.uplinks)
            .map_err(|e| SoarError::Internal(format!("uplinks: {e}")))?;
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM info_systems WHERE agency_id = $1 AND name = $2")
            .bind(id)
            .bind(&s.name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(SoarError::Conflict(format!(
                "agency {id} already has a system named {:?}",
                s.name
            )));
        }
        let sid: i64 = sqlx::query(
            "INSERT INTO info_systems (agency_id, name, level, owner, operator, uplinks, \
             description, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(id)
        .bind(&s.name)
        .bind(s.level)
        .bind(&s.owner)
        .bind(&s.operator)
        .bind(&uplinks)
        .bind(&s.description)
        .bind(to_ms(self.now()))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let sys = fetch_system(&mut tx, sid).await?;
        self.audit(
            &mut tx,
            actor,
            "system.create",
            "system",
            sid,
            None,
            json(&sys),
        )
        .await?;
        tx.commit().await?;
        Ok(sys)
    }

    /// Replaces the fields of an information system.
    pub async fn update_system(
        &self,
        actor: &Actor,
        system_id: i64,
        mut s: NewSystem,
    ) -> Result<InfoSystem> {
        check_system(&mut s)?;
        let uplinks = serde_json::to_string(&s.uplinks)
            .map_err(|e| SoarError::Internal(format!("uplinks: {e}")))?;
        let mut tx = self.begin().await?;
        let before = fetch_system(&mut tx, system_id).await?;
        let clash = sqlx::query(
            "SELECT 1 FROM info_systems WHERE agency_id = $1 AND name = $2 AND id <> $3",
        )
        .bind(before.agency_id)
        .bind(&s.name)
        .bind(system_id)
        .fetch_optional(&mut *tx)
        .await?;
        if clash.is_some() {
            return Err(SoarError::Conflict(format!(
                "agency {} already has a system named {:?}",
                before.agency_id, s.name
            )));
        }
        sqlx::query(
            "UPDATE info_systems SET name = $1, level = $2, owner = $3, operator = $4, \
             uplinks = $5, description = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(&s.name)
        .bind(s.level)
        .bind(&s.owner)
        .bind(&s.operator)
        .bind(&uplinks)
        .bind(&s.description)
        .bind(to_ms(self.now()))
        .bind(system_id)
        .execute(&mut *tx)
        .await?;
        let after = fetch_system(&mut tx, system_id).await?;
        self.audit(
            &mut tx,
            actor,
            "system.update",
            "system",
            system_id,
            json(&before),
            json(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// One information system.
    pub async fn system(&self, system_id: i64) -> Result<InfoSystem> {
        let row = sqlx::query(&format!(
            "SELECT {SYS_COLS} FROM info_systems WHERE id = $1"
        ))
        .bind(system_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| SoarError::not_found("system", system_id))?;
        system_from_row(&row)
    }

    /// The information systems of an agency, by name.
    pub async fn agency_systems(&self, id: i64) -> Result<Vec<InfoSystem>> {
        let rows = sqlx::query(&format!(
            "SELECT {SYS_COLS} FROM info_systems WHERE agency_id = $1 ORDER BY name"
        ))
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(system_from_row).collect()
    }

    // ---- contacts (R-14) ----

    /// The contacts of an agency with their ids.
    pub async fn agency_contact_list(&self, id: i64) -> Result<Vec<StoredContact>> {
        let rows = sqlx::query(
            "SELECT id, kind, name, position, phone, mobile, email, updated_at \
             FROM agency_contacts WHERE agency_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredContact {
                    id: r.try_get("id")?,
                    updated_at: from_ms(r.try_get("updated_at")?),
                    contact: Contact {
                        kind: r.try_get("kind")?,
                        name: r.try_get("name")?,
                        position: r.try_get("position")?,
                        phone: r.try_get("phone")?,
                        mobile: r.try_get("mobile")?,
                        email: r.try_get("email")?,
                    },
                })
            })
            .collect()
    }

    /// Changes a contact. A real change of an incident-response contact (primary or backup)
    /// opens a `contact_update` task due 24 h later; returns the task when one was
    /// opened.
    pub async fn update_agency_contact(
        &self,
        actor: &Actor,
        agency_id: i64,
        contact_id: i64,
        c: Contact,
    ) -> Result<Option<AgencyTask>> {
        check_contact(&c)?;
        let before = self
            .agency_contact_list(agency_id)
            .await?
            .into_iter()
            .find(|s| s.id == contact_id)
            .ok_or_else(|| SoarError::not_found("contact", contact_id))?;
        if before.contact == c {
            return Ok(None);
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE agency_contacts SET kind = $1, name = $2, position = $3, phone = $4, \
             mobile = $5, email = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(&c.kind)
        .bind(&c.name)
        .bind(&c.position)
        .bind(&c.phone)
        .bind(&c.mobile)
        .bind(&c.email)
        .bind(to_ms(now))
        .bind(contact_id)
        .execute(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            actor,
            "agency.update_contact",
            "agency",
            agency_id,
            json(&before.contact),
            json(&c),
        )
        .await?;
        let task = if is_response_contact(&before.contact) || is_response_contact(&c) {
            Some(
                self.open_contact_task(&mut tx, actor, agency_id, &c, now)
                    .await?,
            )
        } else {
            None
        };
        tx.commit().await?;
        Ok(task)
    }

    /// Opens the R-14 task inside a transaction (one open task per agency: a second change
    /// before it is done keeps the earlier, stricter due time).
    pub(crate) async fn open_contact_task(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        actor: &Actor,
        agency_id: i64,
        c: &Contact,
        now: DateTime<Utc>,
    ) -> Result<AgencyTask> {
        let open = sqlx::query(&format!(
            "SELECT {TASK_COLS} FROM agency_tasks WHERE agency_id = $1 AND kind = $2 \
             AND done = FALSE ORDER BY id LIMIT 1"
        ))
        .bind(agency_id)
        .bind(CONTACT_UPDATE_TASK)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = open {
            return task_from_row(&row);
        }
        let due = now + chrono::Duration::hours(CONTACT_UPDATE_HOURS);
        let title = format!(
            "Cập nhật đầu mối ứng cứu sự cố ({} – {}) với cơ quan điều phối / report the changed \
             incident-response contact",
            c.kind, c.name
        );
        let row = sqlx::query(&format!(
            "INSERT INTO agency_tasks (agency_id, kind, title, due_at, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {TASK_COLS}"
        ))
        .bind(agency_id)
        .bind(CONTACT_UPDATE_TASK)
        .bind(&title)
        .bind(to_ms(due))
        .bind(to_ms(now))
        .fetch_one(&mut **tx)
        .await?;
        let task = task_from_row(&row)?;
        self.audit(
            tx,
            actor,
            "agency_task.create",
            "agency_task",
            task.id,
            None,
            json(&task),
        )
        .await?;
        Ok(task)
    }

    /// The tasks of an agency, newest first.
    pub async fn agency_tasks(&self, agency_id: i64) -> Result<Vec<AgencyTask>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLS} FROM agency_tasks WHERE agency_id = $1 ORDER BY id DESC"
        ))
        .bind(agency_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// One agency task.
    pub async fn agency_task(&self, task_id: i64) -> Result<AgencyTask> {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLS} FROM agency_tasks WHERE id = $1"
        ))
        .bind(task_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| SoarError::not_found("agency task", task_id))?;
        task_from_row(&row)
    }

    /// Marks an agency task done.
    pub async fn complete_agency_task(&self, actor: &Actor, task_id: i64) -> Result<AgencyTask> {
        let before = self.agency_task(task_id).await?;
        if before.done {
            return Ok(before);
        }
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE agency_tasks SET done = TRUE, done_at = $1 WHERE id = $2 RETURNING {TASK_COLS}"
        ))
        .bind(to_ms(self.now()))
        .bind(task_id)
        .fetch_one(&mut *tx)
        .await?;
        let after = task_from_row(&row)?;
        self.audit(
            &mut tx,
            actor,
            "agency_task.done",
            "agency_task",
            task_id,
            json(&before),
            json(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Open agency tasks whose due time has passed at `now`.
    pub async fn overdue_agency_tasks(&self, now: DateTime<Utc>) -> Result<Vec<AgencyTask>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLS} FROM agency_tasks WHERE done = FALSE AND due_at < $1 ORDER BY id"
        ))
        .bind(to_ms(now))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    // ---- CSV ----

    /// Imports one kind of CSV. Agencies: see `import_agencies_csv`. Contacts, systems and
    /// domains name their agency by `agency_code`. The whole file is checked row by row and a
    /// bad row stops the import with its line number; rows before it stay imported (each row
    /// is its own audited change). Returns the number of rows that changed something.
    pub async fn import_csv(&self, actor: &Actor, kind: CsvKind, data: &[u8]) -> Result<usize> {
        if kind == CsvKind::Agencies {
            return self.import_agencies_csv(actor, data).await;
        }
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(data);
        let headers = reader
            .headers()
            .map_err(|e| SoarError::Invalid(format!("CSV header: {e}")))?
            .clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| SoarError::Invalid(format!("CSV: missing column {name}")))
        };
        let opt = |name: &str| headers.iter().position(|h| h == name);
        let c_agency = col("agency_code")?;
        let mut changed = 0;
        match kind {
            CsvKind::Contacts => {
                let (c_kind, c_name) = (col("kind")?, col("name")?);
                let (c_pos, c_phone, c_mobile, c_email) =
                    (opt("position"), opt("phone"), opt("mobile"), opt("email"));
                for (i, rec) in reader.records().enumerate() {
                    let line = i + 2;
                    let rec =
                        rec.map_err(|e| SoarError::Invalid(format!("CSV line {line}: {e}")))?;
                    let get =
                        |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").to_owned();
                    let agency = self
                        .agency_by_code(&get(Some(c_agency)))
                        .await
                        .map_err(|e| line_err(line, e))?;
                    let c = Contact {
                        kind: get(Some(c_kind)),
                        name: get(Some(c_name)),
                        position: get(c_pos),
                        phone: get(c_phone),
                        mobile: get(c_mobile),
                        email: get(c_email),
                    };
                    check_contact(&c).map_err(|e| line_err(line, e))?;
                    // The row replaces the agency's contact of this kind and name, else adds.
                    let existing = self
                        .agency_contact_list(agency.id)
                        .await?
                        .into_iter()
                        .find(|s| s.contact.kind == c.kind && s.contact.name == c.name);
                    match existing {
                        Some(s) if s.contact == c => {}
                        Some(s) => {
                            self.update_agency_contact(actor, agency.id, s.id, c)
                                .await
                                .map_err(|e| line_err(line, e))?;
                            changed += 1;
                        }
                        None => {
                            self.add_agency_contact(actor, agency.id, c)
                                .await
                                .map_err(|e| line_err(line, e))?;
                            changed += 1;
                        }
                    }
                }
            }
            CsvKind::Systems => {
                let (c_name, c_level) = (col("name")?, col("level")?);
                let (c_owner, c_op, c_up, c_desc) = (
                    opt("owner"),
                    opt("operator"),
                    opt("uplinks"),
                    opt("description"),
                );
                for (i, rec) in reader.records().enumerate() {
                    let line = i + 2;
                    let rec =
                        rec.map_err(|e| SoarError::Invalid(format!("CSV line {line}: {e}")))?;
                    let get =
                        |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").to_owned();
                    let agency = self
                        .agency_by_code(&get(Some(c_agency)))
                        .await
                        .map_err(|e| line_err(line, e))?;
                    let level_text = get(Some(c_level));
                    let level = level_text.parse::<i64>().map_err(|_| {
                        SoarError::Invalid(format!(
                            "CSV line {line}: security level {level_text:?} is not a number"
                        ))
                    })?;
                    let s = NewSystem {
                        name: get(Some(c_name)),
                        level,
                        owner: get(c_owner),
                        operator: get(c_op),
                        uplinks: parse_uplinks(&get(c_up)).map_err(|e| line_err(line, e))?,
                        description: get(c_desc),
                    };
                    let existing = self
                        .agency_systems(agency.id)
                        .await?
                        .into_iter()
                        .find(|x| x.name == s.name.trim());
                    match existing {
                        Some(x) => {
                            let same = x.level == s.level
                                && x.owner == s.owner.trim()
                                && x.operator == s.operator.trim()
                                && x.uplinks == s.uplinks
                                && x.description == s.description;
                            if !same {
                                self.update_system(actor, x.id, s)
                                    .await
                                    .map_err(|e| line_err(line, e))?;
                                changed += 1;
                            }
                        }
                        None => {
                            self.add_system(actor, agency.id, s)
                                .await
                                .map_err(|e| line_err(line, e))?;
                            changed += 1;
                        }
                    }
                }
            }
            CsvKind::Domains => {
                let c_domain = col("domain")?;
                for (i, rec) in reader.records().enumerate() {
                    let line = i + 2;
                    let rec =
                        rec.map_err(|e| SoarError::Invalid(format!("CSV line {line}: {e}")))?;
                    let get = |c: usize| rec.get(c).unwrap_or("").to_owned();
                    let agency = self
                        .agency_by_code(&get(c_agency))
                        .await
                        .map_err(|e| line_err(line, e))?;
                    let d = normalise_domain(&get(c_domain)).map_err(|e| line_err(line, e))?;
                    let had = self.agency_domains(agency.id).await?.contains(&d);
                    if !had {
                        self.add_agency_domain(actor, agency.id, &d).await?;
                        changed += 1;
                    }
                }
            }
            CsvKind::Agencies => {}
        }
        Ok(changed)
    }
}

fn is_response_contact(c: &Contact) -> bool {
    c.kind == "primary" || c.kind == "backup"
}

async fn fetch_system(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    system_id: i64,
) -> Result<InfoSystem> {
    let row = sqlx::query(&format!(
        "SELECT {SYS_COLS} FROM info_systems WHERE id = $1"
    ))
    .bind(system_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| SoarError::not_found("system", system_id))?;
    system_from_row(&row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn domains_are_normalised_and_checked() {
        assert_eq!(
            normalise_domain(" DichVuCong.BenTre.gov.vn. ").unwrap(),
            "dichvucong.bentre.gov.vn"
        );
        assert_eq!(
            normalise_domain("xn--bnh-phc-z1a.vn").unwrap(),
            "xn--bnh-phc-z1a.vn"
        );
        for bad in [
            "",
            "localhost",
            "a..vn",
            "-a.vn",
            "a-.vn",
            "bến-tre.vn",
            "a b.vn",
        ] {
            assert!(normalise_domain(bad).is_err(), "{bad:?}");
        }
        assert!(normalise_domain(&format!("{}.vn", "a".repeat(64))).is_err());
    }

    #[test]
    fn uplinks_parse_from_the_csv_form() {
        let u = parse_uplinks("VNPT=203.113.130.0/30; Viettel ; TSLCD=2402:800::1/64").unwrap();
        assert_eq!(
            u,
            [
                Uplink {
                    provider: "VNPT".into(),
                    cidr: Some("203.113.130.0/30".into())
                },
                Uplink {
                    provider: "Viettel".into(),
                    cidr: None
                },
                Uplink {
                    provider: "TSLCD".into(),
                    cidr: Some("2402:800::/64".into())
                },
            ]
        );
        assert!(parse_uplinks("=1.2.3.0/24").is_err());
        assert!(parse_uplinks("VNPT=not-a-cidr").is_err());
        assert!(parse_uplinks("").unwrap().is_empty());
    }

    #[test]
    fn csv_kinds_parse() {
        for k in ["agencies", "contacts", "systems", "domains"] {
            let kind = CsvKind::parse(k).unwrap();
            assert_eq!(serde_json::to_value(kind).unwrap(), k);
        }
        assert!(CsvKind::parse("users").is_err());
    }

    proptest! {
        #[test]
        fn domain_and_uplink_parsers_never_panic(s in "\\PC{0,80}") {
            if let Ok(d) = normalise_domain(&s) {
                prop_assert_eq!(normalise_domain(&d).unwrap(), d);
            }
            let _ = parse_uplinks(&s);
        }
    }
}
