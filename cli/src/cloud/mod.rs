//! The cloud clients, each behind the cargo feature of its name: security
//! groups through aws-sdk-ec2, NSGs through azure_mgmt_network. The commands
//! that use them are in `cmd/cloud.rs`.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
