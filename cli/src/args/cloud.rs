//! Where `deploy` and `drift` find the clouds (SPEC §3's cloud options).

use clap::Args;

/// Where a cloud deployment goes; `deploy` and `drift` take the same options.
#[derive(Args, Debug, Clone, Default)]
pub struct CloudArgs {
    /// The VPC whose security groups are managed (aws).
    #[arg(long, value_name = "VPC_ID")]
    pub aws_vpc: Option<String>,
    /// The resource group whose NSGs are managed (azure).
    #[arg(long, value_name = "RG")]
    pub azure_resource_group: Option<String>,
    /// The location of NSGs segc creates (azure).
    #[arg(long, value_name = "LOC")]
    pub azure_location: Option<String>,
    /// The project whose VPC firewall rules are managed (gcp).
    #[arg(long, value_name = "PROJECT")]
    pub gcp_project: Option<String>,
    /// The VPC network the rules apply to (gcp).
    #[arg(long, value_name = "NETWORK", default_value = "default")]
    pub gcp_network: String,
}
