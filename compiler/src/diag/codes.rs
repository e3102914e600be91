//! The registry of diagnostic codes. Every code has a page `docs/diagnostics/CODE.md`;
//! a test checks that this enum and those pages agree.

use serde::{Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

macro_rules! codes {
    ($($name:ident => $sev:ident, $summary:literal;)*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($name,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$name => stringify!($name),)* }
            }

            /// The severity this code is reported with.
            pub fn severity(self) -> Severity {
                match self { $(Code::$name => Severity::$sev,)* }
            }

            /// One line describing what the code means, as in the SPEC's table.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$name => $summary,)* }
            }
        }
    };
}

codes! {
    E001 => Error, "syntax error";
    E002 => Error, "invalid token";
    E101 => Error, "unknown name";
    E102 => Error, "name defined twice";
    E103 => Error, "import not found, absolute, or escaping the root folder";
    E104 => Error, "import cycle";
    E201 => Error, "unknown attribute";
    E202 => Error, "value of the wrong type or not one of the allowed values";
    E203 => Error, "required attribute missing";
    E204 => Error, "port out of range or reversed range";
    E205 => Error, "invalid address or prefix";
    E206 => Error, "invalid date or duration";
    E207 => Error, "a service or group defined in terms of itself";
    E208 => Error, "a test case mixes IPv4 and IPv6 addresses";
    E209 => Error, "an empty list where at least one item is needed";
    E301 => Error, "the same prefix in two zones";
    E401 => Error, "assertion failed";
    E402 => Error, "test case failed";
    P101 => Error, "untrusted zone to cde zone allowed directly";
    P102 => Error, "cde to untrusted allowed on `any` or without justification";
    P103 => Error, "flow to or from a cde zone has no justification";
    P104 => Warning, "flow touching cde not reviewed within the review interval";
    P105 => Error, "wireless zone to cde zone allowed";
    P106 => Error, "out_of_scope zone has a flow to or from a cde zone";
    P107 => Warning, "overly broad service touching cde";
    P108 => Warning, "insecure service touching cde";
    W501 => Warning, "redundant flow";
    W502 => Warning, "dead flow";
    W503 => Warning, "unused zone or service";
    W504 => Warning, "zone that can never match";
    W505 => Warning, "a blocked feed overlaps a zone whose scope is not untrusted";
    T001 => Error, "the policy does not fit a target's capacity or quotas";
    T002 => Error, "the target cannot express the policy exactly";
    T003 => Warning, "a target cannot enforce a feed block";
}

impl Code {
    /// Whether the code comes from the front end (syntax, names, types, values):
    /// with one of these, the IR is incomplete and must not be analysed or used.
    pub fn is_front_end(self) -> bool {
        self <= Code::E301
    }

    /// Whether the code comes from lowering to a target.
    pub fn is_target(self) -> bool {
        self >= Code::T001
    }

    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
