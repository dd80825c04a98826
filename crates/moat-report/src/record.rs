use serde::Serialize;

/// Where a report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Arf,
    Xarf,
    AbuseIpdb,
    Spamhaus,
    Webhook,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Arf,
        Target::Xarf,
        Target::AbuseIpdb,
        Target::Spamhaus,
        Target::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Arf => "arf",
            Target::Xarf => "xarf",
            Target::AbuseIpdb => "abuseipdb",
            Target::Spamhaus => "spamhaus",
            Target::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A report's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Written to the outbox instead of being sent.
    DryRun,
    /// Written to the outbox because that is where this target delivers (X-ARF without a URL).
    Written,
    /// Waiting: not tried yet, held back by the rate limit, or waiting for a retry.
    Queued,
    /// Being sent right now.
    Sending,
    /// The receiver accepted it (2xx, including Spamhaus' 208 "already reported"; SMTP 250).
    Sent,
    /// The receiver answered with a permanent refusal (4xx other than 429; SMTP 5xx).
    Rejected,
    /// Gave up: retries exhausted, or the report could not be addressed or built.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::DryRun => "dry-run",
            Status::Written => "written",
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::DryRun,
            Status::Written,
            Status::Queued,
            Status::Sending,
            Status::Sent,
            Status::Rejected,
            Status::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// No further attempts will be made.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Sending)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One report and what became of it, as kept in the `reports` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub id: i64,
    /// The quarantine id of the incident.
    pub message_id: String,
    pub target: Target,
    /// What is reported: `ip:…`, `domain:…`, `url:…`, `message:…`; an ARF report to a contact
    /// that covers several lists them separated by spaces.
    pub indicator: String,
    /// The abuse contact (ARF) or the endpoint URL; `outbox` for outbox-only deliveries.
    pub recipient: String,
    pub status: Status,
    /// The receiver's HTTP status or SMTP reply code, when it answered.
    pub answer_code: Option<u16>,
    /// A short summary of the answer (or of the problem).
    pub answer: Option<String>,
    pub attempts: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When a queued report is due next.
    pub next_attempt_ms: Option<u64>,
    pub outbox_path: Option<String>,
}
