//! The cloud clients, each behind the cargo feature of its name: security
//! groups through aws-sdk-ec2, NSGs through azure_mgmt_network. The commands
//! that use them are in `cmd/cloud.rs`.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(any(feature = "azure", feature = "gcp"))]
pub mod lanes;

/// What an apply reports as it goes, and whether it may still act (a fleet
/// controller stops the moment it may no longer lead).
pub struct Hooks<'a> {
    pub progress: &'a dyn Fn(&str),
    pub may_act: &'a dyn Fn() -> bool,
}

impl Hooks<'_> {
    /// Before each change: an error once acting is no longer allowed.
    pub fn check(&self) -> anyhow::Result<()> {
        if (self.may_act)() {
            Ok(())
        } else {
            anyhow::bail!("stopped before the next change: this controller no longer leads the fleet")
        }
    }
}
