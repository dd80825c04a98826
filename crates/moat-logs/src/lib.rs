//! Moat's log watcher: the sensor for what Moat does not see itself (an sshd, an nginx, a
//! Postfix that log attacks). Log sources turn files, the journal and stdin into lines;
//! fail2ban's own filters, read in place from the user's `/etc/fail2ban`, turn lines into
//! failures (an address and a time); jails count failures into bans for the decider.

pub mod fail2ban;
mod history;
pub mod jail;
pub mod source;
