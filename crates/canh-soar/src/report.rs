//! The initial-report draft (Báo cáo ban đầu sự cố mạng, TT20 Phụ lục I Mẫu 03; R-04) of an
//! incident flagged beyond the operator's capacity, filled from the incident, its agency (and
//! parent), contacts, linked alerts, observables and evidence, and the regulation profile. A
//! mandatory (*) field with no value is never left blank: it is listed in `missing` and shown
//! as missing in the rendered document.

use crate::Soar;
use crate::error::{Result, SoarError};
use crate::incident::Incident;
use crate::notify::{Outgoing, step_names, vn_time};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

/// One field of the form.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FormField {
    /// Stable key.
    pub key: &'static str,
    /// Vietnamese label, as on the form.
    pub label_vi: &'static str,
    /// English label.
    pub label_en: &'static str,
    /// Marked (*) on the form.
    pub mandatory: bool,
    /// The value; `None` when Canh has no data for it.
    pub value: Option<String>,
}

/// A section of the form.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FormSection {
    /// Vietnamese heading.
    pub title_vi: &'static str,
    /// English heading.
    pub title_en: &'static str,
    /// Fields.
    pub fields: Vec<FormField>,
}

/// A mandatory field without a value.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MissingField {
    /// Key of the field.
    pub key: &'static str,
    /// Vietnamese label.
    pub label_vi: &'static str,
    /// English label.
    pub label_en: &'static str,
}

/// The Mẫu 03 draft.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InitialReportDraft {
    /// Form id (`mau-03`).
    pub form: &'static str,
    /// Incident.
    pub incident_id: i64,
    /// Profile the incident was opened under.
    pub profile_id: String,
    /// Its version.
    pub profile_version: i64,
    /// When the draft was generated.
    pub generated_at: DateTime<Utc>,
    /// When the report is due (beyond-capacity flag + the profile's "immediately" hours).
    pub due: Option<DateTime<Utc>>,
    /// Subject for e-mailing it (R-08: starts with `[TBSC]`).
    pub email_subject: String,
    /// The form.
    pub sections: Vec<FormSection>,
    /// Mandatory fields that still need a value.
    pub missing: Vec<MissingField>,
}

fn f(
    key: &'static str,
    label_vi: &'static str,
    label_en: &'static str,
    mandatory: bool,
    value: Option<String>,
) -> FormField {
    FormField {
        key,
        label_vi,
        label_en,
        mandatory,
        value: value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn join(items: impl IntoIterator<Item = String>) -> Option<String> {
    let mut v: Vec<String> = items.into_iter().filter(|s| !s.trim().is_empty()).collect();
    v.sort();
    v.dedup();
    (!v.is_empty()).then(|| v.join(", "))
}

const VN_SECS: i32 = 7 * 3600;

fn vn_parts(t: DateTime<Utc>) -> (String, String) {
    let local = match FixedOffset::east_opt(VN_SECS) {
        Some(off) => t.with_timezone(&off).naive_local(),
        None => t.naive_utc(),
    };
    (
        local.format("%d/%m/%y").to_string(),
        local.format("%H:%M").to_string(),
    )
}

impl Soar {
    /// The Mẫu 03 draft of an incident flagged beyond capacity (refused otherwise).
    pub async fn initial_report_draft(&self, id: i64) -> Result<InitialReportDraft> {
        let inc = self.incident(id).await?;
        let Some(flagged) = inc.beyond_capacity_at else {
            return Err(SoarError::Invalid(format!(
                "incident {id} is not flagged beyond capacity; the initial report (Mẫu 03) is \
                 only drafted for such incidents"
            )));
        };
        let agency = self.agency(inc.agency_id).await?;
        let parent = match agency.parent_id {
            Some(p) => Some(self.agency(p).await?),
            None => None,
        };
        let contacts = self.agency_contacts(inc.agency_id).await?;
        let contact = contacts
            .iter()
            .find(|c| c.kind == "primary")
            .or_else(|| contacts.iter().find(|c| c.kind == "backup"));
        let mut alerts = Vec::new();
        for aid in self.incident_alerts(id).await? {
            alerts.push(self.alert(aid).await?);
        }
        let observables = self.observables(id).await?;
        let evidence = self.incident_evidence(id).await?;
        let ranges = self.agency_ranges(inc.agency_id).await?;
        let domains = self.agency_domains(inc.agency_id).await?;
        // The affected information system: the one linked to the incident, else the agency's
        // only one.
        let system = match inc.system_id {
            Some(sid) => Some(self.system(sid).await?),
            None => {
                let mut all = self.agency_systems(inc.agency_id).await?;
                if all.len() == 1 { all.pop() } else { None }
            }
        };
        let obs = |kinds: &[&str]| {
            join(
                observables
                    .iter()
                    .filter(|o| kinds.contains(&o.kind.as_str()))
                    .map(|o| o.value.clone()),
            )
        };
        let now = self.now();
        let (det_date, det_time) = vn_parts(inc.detected_at);
        let handled = inc.response_ended_at.is_some() || inc.closed;
        let (step_vi, _) = step_names(inc.step);
        let description = non_empty(&inc.description).map(|d| {
            format!(
                "{}. {d} (Mức độ: {}; bước hiện tại: {step_vi})",
                inc.title,
                inc.severity.name_vi()
            )
        });
        let detection = (!alerts.is_empty()).then(|| {
            format!(
                "Qua hệ thống phát hiện xâm nhập (giám sát Canh; cảnh báo: {})",
                join(alerts.iter().map(|a| a.rule_title.clone())).unwrap_or_default()
            )
        });
        let hosts = join(alerts.iter().map(|a| a.host.clone()));
        let system_name = system
            .as_ref()
            .map(|s| s.name.clone())
            .or(hosts)
            .or_else(|| obs(&["hostname", "domain", "url"]));
        let operator = system
            .as_ref()
            .and_then(|s| non_empty(&s.operator))
            .unwrap_or_else(|| agency.name.clone());
        let owner = system
            .as_ref()
            .and_then(|s| non_empty(&s.owner))
            .or_else(|| parent.as_ref().map(|p| p.name.clone()));
        let uplink_providers = system.as_ref().and_then(|s| {
            join(s.uplinks.iter().map(|u| match &u.cidr {
                Some(c) => format!("{} ({c})", u.provider),
                None => u.provider.clone(),
            }))
        });
        let all_domains = join(
            domains.iter().cloned().chain(
                observables
                    .iter()
                    .filter(|o| o.kind == "domain" && !domains.contains(&o.value))
                    .map(|o| o.value.clone()),
            ),
        );
        let ips = join(
            ranges
                .iter()
                .filter(|r| r.public)
                .map(|r| r.cidr.clone())
                .chain(
                    observables
                        .iter()
                        .filter(|o| o.kind == "ip" && !o.ioc)
                        .map(|o| o.value.clone()),
                ),
        );
        let sections = vec![
            FormSection {
                title_vi: "Thông tin về tổ chức/cá nhân báo cáo sự cố",
                title_en: "Reporting organisation",
                fields: vec![
                    f(
                        "reporter.name",
                        "Tên",
                        "Name",
                        true,
                        Some(agency.name.clone()),
                    ),
                    f("reporter.address", "Địa chỉ", "Address", true, None),
                    f("reporter.phone", "Điện thoại", "Phone", true, None),
                    f("reporter.email", "Email", "E-mail", true, None),
                ],
            },
            FormSection {
                title_vi: "Người liên hệ",
                title_en: "Contact person",
                fields: vec![
                    f(
                        "contact.name",
                        "Họ và tên",
                        "Full name",
                        true,
                        contact.map(|c| c.name.clone()),
                    ),
                    f(
                        "contact.position",
                        "Chức vụ",
                        "Position",
                        false,
                        contact.map(|c| c.position.clone()),
                    ),
                    f(
                        "contact.phone",
                        "Điện thoại",
                        "Phone",
                        true,
                        contact.and_then(|c| join([c.mobile.clone(), c.phone.clone()])),
                    ),
                    f(
                        "contact.email",
                        "Email",
                        "E-mail",
                        true,
                        contact.map(|c| c.email.clone()),
                    ),
                ],
            },
            FormSection {
                title_vi: "Thông tin chi tiết về hệ thống bị sự cố",
                title_en: "Affected system",
                fields: vec![
                    f(
                        "system.operator",
                        "Tên đơn vị vận hành hệ thống thông tin",
                        "Operator of the information system",
                        true,
                        Some(operator),
                    ),
                    f(
                        "system.owner",
                        "Cơ quan chủ quản",
                        "Owning agency",
                        false,
                        owner,
                    ),
                    f(
                        "system.name",
                        "Tên hệ thống bị sự cố",
                        "Name of the affected system",
                        false,
                        system_name,
                    ),
                    f(
                        "system.level",
                        "Phân loại cấp độ của HTTT (nếu có)",
                        "Security level of the system (if any)",
                        false,
                        system.as_ref().map(|s| format!("Cấp {}", s.level)),
                    ),
                    f(
                        "system.uplinks",
                        "Tên nhà cung cấp dịch vụ kết nối bên ngoài (nếu có)",
                        "External connectivity providers (if any)",
                        false,
                        uplink_providers,
                    ),
                    f(
                        "incident.description",
                        "Mô tả sơ bộ về sự cố",
                        "Brief description of the incident",
                        true,
                        description,
                    ),
                    f(
                        "incident.detected_date",
                        "Ngày phát hiện (dd/mm/yy)",
                        "Date detected",
                        true,
                        Some(det_date),
                    ),
                    f(
                        "incident.detected_time",
                        "Thời gian phát hiện (giờ, phút)",
                        "Time detected (hour, minute)",
                        true,
                        Some(det_time),
                    ),
                    f(
                        "incident.status",
                        "Hiện trạng sự cố",
                        "Incident status",
                        true,
                        Some(
                            if handled {
                                "Đã được xử lý"
                            } else {
                                "Chưa được xử lý"
                            }
                            .into(),
                        ),
                    ),
                ],
            },
            FormSection {
                title_vi: "Cách thức phát hiện và thông báo",
                title_en: "Detection and notification",
                fields: vec![
                    f(
                        "detection.method",
                        "Cách thức phát hiện",
                        "How it was detected",
                        true,
                        detection,
                    ),
                    f(
                        "notice.sent_to",
                        "Đã gửi thông báo sự cố cho",
                        "Incident notice already sent to",
                        true,
                        inc.notice_sent_at
                            .map(|t| format!("Đã gửi thông báo sự cố lúc {}", vn_time(t))),
                    ),
                ],
            },
            FormSection {
                title_vi: "Thông tin bổ sung về hệ thống xảy ra sự cố",
                title_en: "More about the affected system",
                fields: vec![
                    f(
                        "system.ips",
                        "Các địa chỉ IP của hệ thống",
                        "Public IP addresses of the system",
                        false,
                        ips,
                    ),
                    f(
                        "system.domains",
                        "Các tên miền của hệ thống",
                        "Domain names of the system",
                        false,
                        all_domains,
                    ),
                    f(
                        "attachments",
                        "Thông tin gửi kèm",
                        "Attached information",
                        false,
                        join(
                            evidence
                                .iter()
                                .map(|e| format!("{} (SHA-256 {})", e.filename, e.sha256)),
                        ),
                    ),
                    f(
                        "iocs",
                        "Dấu hiệu tấn công (IOC)",
                        "Indicators of compromise",
                        false,
                        join(
                            observables
                                .iter()
                                .filter(|o| o.ioc)
                                .map(|o| format!("{}: {}", o.kind, o.value)),
                        ),
                    ),
                ],
            },
            FormSection {
                title_vi: "Kiến nghị, đề xuất hỗ trợ và thời gian báo cáo",
                title_en: "Requests and report time",
                fields: vec![
                    f(
                        "requests",
                        "Kiến nghị, đề xuất hỗ trợ",
                        "Requests for assistance",
                        false,
                        None,
                    ),
                    f(
                        "report.time",
                        "Thời gian thực hiện báo cáo sự cố",
                        "Time of this report",
                        true,
                        Some(vn_time(now)),
                    ),
                ],
            },
        ];
        let missing = sections
            .iter()
            .flat_map(|s| &s.fields)
            .filter(|fl| fl.mandatory && fl.value.is_none())
            .map(|fl| MissingField {
                key: fl.key,
                label_vi: fl.label_vi,
                label_en: fl.label_en,
            })
            .collect();
        Ok(InitialReportDraft {
            form: "mau-03",
            incident_id: id,
            profile_id: inc.profile_id.clone(),
            profile_version: inc.profile_version,
            generated_at: now,
            due: Some(flagged + chrono::Duration::hours(inc.initial_report_hours)),
            email_subject: format!("[TBSC] Sự cố #{id} {}", agency.name),
            sections,
            missing,
        })
    }
}

const MISSING_VI: &str = "[THIẾU – bắt buộc]";
const MISSING_EN: &str = "[MISSING – mandatory]";

impl InitialReportDraft {
    /// Plain-text document in Vietnamese (with English labels when `english`).
    pub fn to_text(&self, english: bool) -> String {
        let mut out = String::new();
        out.push_str("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc\n\n");
        out.push_str("BÁO CÁO BAN ĐẦU SỰ CỐ MẠNG (Mẫu 03) – DỰ THẢO\n");
        if english {
            out.push_str("Initial cyber-incident report (form 03) – draft\n");
        }
        out.push_str(&format!(
            "Sự cố #{} · hồ sơ quy định {} v{} · lập lúc {}\n",
            self.incident_id,
            self.profile_id,
            self.profile_version,
            vn_time(self.generated_at)
        ));
        if let Some(d) = self.due {
            out.push_str(&format!("Hạn gửi: {}\n", vn_time(d)));
        }
        for s in &self.sections {
            out.push('\n');
            out.push_str(&s.title_vi.to_uppercase());
            if english {
                out.push_str(&format!(" ({})", s.title_en));
            }
            out.push('\n');
            for fl in &s.fields {
                let star = if fl.mandatory { " (*)" } else { "" };
                let label = if english {
                    format!("{}{star} / {}", fl.label_vi, fl.label_en)
                } else {
                    format!("{}{star}", fl.label_vi)
                };
                let value = match (&fl.value, fl.mandatory) {
                    (Some(v), _) => v.clone(),
                    (None, true) if english => format!("{MISSING_VI} {MISSING_EN}"),
                    (None, true) => MISSING_VI.to_owned(),
                    (None, false) => "(không có)".to_owned(),
                };
                out.push_str(&format!("- {label}: {value}\n"));
            }
        }
        out.push('\n');
        if self.missing.is_empty() {
            out.push_str("Đã đủ các trường bắt buộc.\n");
        } else {
            out.push_str("CÁC TRƯỜNG BẮT BUỘC CÒN THIẾU");
            if english {
                out.push_str(" (mandatory fields still missing)");
            }
            out.push_str(":\n");
            for m in &self.missing {
                if english {
                    out.push_str(&format!("- {} / {}\n", m.label_vi, m.label_en));
                } else {
                    out.push_str(&format!("- {}\n", m.label_vi));
                }
            }
        }
        out.push_str("\nCá nhân/người đại diện theo pháp luật (ký tên, đóng dấu)\n");
        out
    }

    /// A self-contained HTML document (Vietnamese, English labels when `english`).
    pub fn to_html(&self, english: bool) -> String {
        let mut out = String::from(
            "<!DOCTYPE html>\n<html lang=\"vi\">\n<head><meta charset=\"utf-8\">\
             <title>Báo cáo ban đầu sự cố mạng</title>\
             <style>body{font-family:'Times New Roman',serif;max-width:50em;margin:2em auto}\
             .missing{color:#b00;font-weight:bold}th{text-align:left;vertical-align:top;\
             width:40%}td,th{border-bottom:1px solid #ccc;padding:.3em}\
             table{border-collapse:collapse;width:100%}</style></head>\n<body>\n",
        );
        out.push_str(
            "<p style=\"text-align:center\"><b>CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM</b><br>\
             <b><u>Độc lập - Tự do - Hạnh phúc</u></b></p>\n",
        );
        out.push_str("<h1 style=\"text-align:center\">BÁO CÁO BAN ĐẦU SỰ CỐ MẠNG</h1>\n");
        out.push_str(&format!(
            "<p style=\"text-align:center\">(Mẫu 03 – dự thảo{}) · Sự cố #{} · {} v{} · {}</p>\n",
            if english { " / form 03 – draft" } else { "" },
            self.incident_id,
            esc(&self.profile_id),
            self.profile_version,
            vn_time(self.generated_at)
        ));
        if !self.missing.is_empty() {
            out.push_str("<div class=\"missing\"><p>Các trường bắt buộc còn thiếu");
            if english {
                out.push_str(" / mandatory fields still missing");
            }
            out.push_str(":</p><ul>");
            for m in &self.missing {
                out.push_str(&format!("<li>{}</li>", esc(m.label_vi)));
            }
            out.push_str("</ul></div>\n");
        }
        for s in &self.sections {
            out.push_str(&format!("<h2>{}", esc(s.title_vi)));
            if english {
                out.push_str(&format!(" <small>({})</small>", esc(s.title_en)));
            }
            out.push_str("</h2>\n<table>\n");
            for fl in &s.fields {
                let star = if fl.mandatory { " (*)" } else { "" };
                let en = if english {
                    format!("<br><small>{}</small>", esc(fl.label_en))
                } else {
                    String::new()
                };
                let value = match (&fl.value, fl.mandatory) {
                    (Some(v), _) => esc(v),
                    (None, true) => format!("<span class=\"missing\">{}</span>", esc(MISSING_VI)),
                    (None, false) => "(không có)".to_owned(),
                };
                out.push_str(&format!(
                    "<tr><th>{}{star}{en}</th><td>{value}</td></tr>\n",
                    esc(fl.label_vi)
                ));
            }
            out.push_str("</table>\n");
        }
        out.push_str(
            "<p style=\"text-align:right\"><i>Cá nhân/người đại diện theo pháp luật<br>\
             (ký tên, đóng dấu)</i></p>\n</body>\n</html>\n",
        );
        out
    }

    /// The e-mail for the roster carrying this draft as an HTML attachment.
    pub(crate) fn outgoing(&self, inc: &Incident) -> Outgoing {
        Outgoing {
            dedup_key: format!("initial_report|{}", inc.id),
            kind: "initial_report",
            incident_id: Some(inc.id),
            subject: format!(
                "{} – dự thảo báo cáo ban đầu (Mẫu 03) / draft initial report",
                self.email_subject
            ),
            body: format!(
                "Sự cố #{id} ({title}) được đánh dấu vượt quá khả năng xử lý. Dự thảo báo cáo ban \
                 đầu (Mẫu 03) được đính kèm; cần gửi ngay{due}. Số trường bắt buộc còn thiếu: \
                 {n}.\n\n--- English ---\nIncident #{id} ({title}) was flagged beyond capacity. \
                 The draft initial report (form 03) is attached and must be sent immediately. \
                 Mandatory fields still missing: {n}.\n",
                id = inc.id,
                title = inc.title,
                due = self
                    .due
                    .map(|d| format!(" (hạn {})", vn_time(d)))
                    .unwrap_or_default(),
                n = self.missing.len(),
            ),
            attachment: Some((
                format!("báo-cáo-ban-đầu-sự-cố-{}.html", inc.id),
                "text/html; charset=utf-8".into(),
                self.to_html(true),
            )),
        }
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn blank_values_count_as_missing() {
        let fl = f("k", "nhãn", "label", true, Some("   ".into()));
        assert_eq!(fl.value, None);
    }
}
