//! Moat's log watcher: the sensor for what Moat does not see itself (an sshd, an nginx, a
//! Postfix that log attacks). Log sources turn files, the journal and stdin into lines;
//! fail2ban's own filters, read in place from the user's `/etc/fail2ban`, turn lines into
//! failures (an address and a time). The jails that count failures into bans are detectors,
//! in `moat-detect`.

pub mod fail2ban;
pub mod source;
