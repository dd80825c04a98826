//! Moat's kernel enforcer: bans as elements of nftables sets in a table Moat owns
//! (`inet moat`), following the decider's changes, so that a banned address costs nothing,
//! on any port. Where the machine has no nftables or no permission (Fly, a container
//! without `CAP_NET_ADMIN`), [`enforcer::run`] returns the reason and Moat goes on enforcing
//! in-process, as it always does as well.

pub mod batch;
pub mod enforcer;
pub mod redirect;

pub use enforcer::{run, NftConfig, NftError};
pub use redirect::{Target, TrapRedirect};
