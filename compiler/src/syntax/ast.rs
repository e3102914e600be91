//! The syntax tree. Every node has a span; spans are skipped when a tree is
//! serialised, so two trees that differ only in layout serialise the same.

use serde::Serialize;

use crate::diag::Span;

#[derive(Clone, Debug, Serialize)]
pub struct Ident {
    pub name: String,
    #[serde(skip)]
    pub span: Span,
}

/// A dotted name: `card_vault`, `std.services.https`, `aws.security_group`.
#[derive(Clone, Debug, Serialize)]
pub struct Path {
    pub segments: Vec<Ident>,
    #[serde(skip)]
    pub span: Span,
}

impl Path {
    pub fn dotted(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|s| s.name.as_str()).collect();
        parts.join(".")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, Serialize)]
pub enum Item {
    Policy(Policy),
    Use(Use),
    Import(Import),
    Service(Service),
    Zone(Zone),
    Flow(Flow),
    Deny(Deny),
    Assert(Assert),
    Test(Test),
    Group(Group),
    Feed(Feed),
    BlockFeeds(BlockFeeds),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Policy(x) => x.span,
            Item::Use(x) => x.span,
            Item::Import(x) => x.span,
            Item::Service(x) => x.span,
            Item::Zone(x) => x.span,
            Item::Flow(x) => x.span,
            Item::Deny(x) => x.span,
            Item::Assert(x) => x.span,
            Item::Test(x) => x.span,
            Item::Group(x) => x.span,
            Item::Feed(x) => x.span,
            Item::BlockFeeds(x) => x.span,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StrLit {
    pub value: String,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    pub name: StrLit,
    pub body: Block,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum UseTree {
    /// `use std.zones.internet`
    Single,
    /// `use std.services.{https, ssh}`
    Group(Vec<Ident>),
    /// `use std.services.*`
    Glob,
}

#[derive(Clone, Debug, Serialize)]
pub struct Use {
    pub path: Path,
    pub tree: UseTree,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Import {
    pub path: StrLit,
    #[serde(skip)]
    pub span: Span,
}

/// A service expression in a list: a literal or a name.
#[derive(Clone, Debug, Serialize)]
pub enum ServiceRef {
    /// `tcp/443`, `udp/1000-2000`, `icmp/8`; the text as written.
    Literal {
        text: String,
        #[serde(skip)]
        span: Span,
    },
    /// `icmp`: every ICMP type.
    Icmp(#[serde(skip)] Span),
    /// `any`: every protocol and port.
    Any(#[serde(skip)] Span),
    Name(Path),
}

impl ServiceRef {
    pub fn span(&self) -> Span {
        match self {
            ServiceRef::Literal { span, .. } | ServiceRef::Icmp(span) | ServiceRef::Any(span) => *span,
            ServiceRef::Name(p) => p.span,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Service {
    pub name: Ident,
    pub services: Vec<ServiceRef>,
    pub body: Option<Block>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Zone {
    pub name: Ident,
    pub body: Block,
    #[serde(skip)]
    pub span: Span,
}

/// One end of a flow, deny or assert: one or more zones or groups, `a, b`.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneList {
    pub items: Vec<Path>,
    #[serde(skip)]
    pub span: Span,
}

impl ZoneList {
    /// `a, b`
    pub fn text(&self) -> String {
        let parts: Vec<String> = self.items.iter().map(Path::dotted).collect();
        parts.join(", ")
    }
}

/// `group stores = [store1_pos, store2_pos]`: a name for several zones.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub name: Ident,
    pub members: Vec<Path>,
    /// The bracketed list.
    #[serde(skip)]
    pub list: Span,
    #[serde(skip)]
    pub span: Span,
}

/// `feed spamhaus_drop { source = "feeds/drop.txt" format = spamhaus }`: a
/// list of prefixes from outside the policy.
#[derive(Clone, Debug, Serialize)]
pub struct Feed {
    pub name: Ident,
    pub body: Block,
    #[serde(skip)]
    pub span: Span,
}

/// `block spamhaus_drop, firehol_level1`: nothing to or from the feeds' addresses.
#[derive(Clone, Debug, Serialize)]
pub struct BlockFeeds {
    pub feeds: Vec<Path>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Flow {
    pub from: ZoneList,
    pub to: ZoneList,
    pub services: Vec<ServiceRef>,
    pub body: Option<Block>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Deny {
    pub from: ZoneList,
    pub to: ZoneList,
    pub services: Vec<ServiceRef>,
    pub body: Option<Block>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum AssertKind {
    Unreachable,
    Denied(Vec<ServiceRef>),
}

#[derive(Clone, Debug, Serialize)]
pub struct Assert {
    pub kind: AssertKind,
    pub from: ZoneList,
    pub to: ZoneList,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Test {
    pub name: StrLit,
    pub cases: Vec<TestCase>,
    /// Where the closing brace is, for the formatter.
    #[serde(skip)]
    pub close: Span,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Expect {
    Allow,
    Deny,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        }
    }
}

/// One end of a test case: an address or a zone.
#[derive(Clone, Debug, Serialize)]
pub enum Endpoint {
    Addr {
        text: String,
        #[serde(skip)]
        span: Span,
    },
    Zone(Path),
}

impl Endpoint {
    pub fn span(&self) -> Span {
        match self {
            Endpoint::Addr { span, .. } => *span,
            Endpoint::Zone(p) => p.span,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TestCase {
    pub expect: Expect,
    pub from: Endpoint,
    pub to: Endpoint,
    pub service: ServiceRef,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub attrs: Vec<Attr>,
    #[serde(skip)]
    pub close: Span,
    #[serde(skip)]
    pub span: Span,
}

impl Block {
    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name.dotted() == name)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Attr {
    pub name: Path,
    pub value: Value,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum ValueKind {
    Str(String),
    Int(String),
    Bool(bool),
    Date(String),
    Duration(String),
    Addr(String),
    Service(String),
    /// A bare word: an enum value such as `cde`, or a name.
    Word(String),
    List(Vec<Value>),
}

#[derive(Clone, Debug, Serialize)]
pub struct Value {
    pub kind: ValueKind,
    #[serde(skip)]
    pub span: Span,
}

impl Value {
    /// How the value's type is named in diagnostics.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::Str(_) => "string",
            ValueKind::Int(_) => "integer",
            ValueKind::Bool(_) => "boolean",
            ValueKind::Date(_) => "date",
            ValueKind::Duration(_) => "duration",
            ValueKind::Addr(_) => "address",
            ValueKind::Service(_) => "service",
            ValueKind::Word(_) => "name",
            ValueKind::List(_) => "list",
        }
    }
}
