/// Declares one aggregate's event enum: each variant wraps a payload struct and carries its
/// stable dotted wire name. The name appears once, so the serde tag, `event_type()` and the
/// schema list cannot drift apart.
macro_rules! event_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident($payload:ty) = $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        // Events are short-lived values decoded one at a time (see `DomainEvent`).
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum $name {
            $( #[serde(rename = $wire)] $variant($payload), )*
        }

        impl $name {
            /// Every wire name this enum can carry.
            pub const TYPES: &'static [&'static str] = &[$($wire),*];

            /// The stable dotted wire name of this event.
            pub fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $wire, )* }
            }

            /// Decodes a payload of the current schema version straight from its text into
            /// the variant's struct: no intermediate `Value`, no buffering of the payload.
            /// `None` when the name is not one of this enum's.
            pub fn from_payload_str(event_type: &str, payload: &str) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $( $wire => Some(serde_json::from_str::<$payload>(payload).map(Self::$variant)), )*
                    _ => None,
                }
            }

            /// The same, from an already parsed (upcast) payload.
            pub fn from_payload_value(event_type: &str, payload: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $( $wire => Some(serde_json::from_value::<$payload>(payload).map(Self::$variant)), )*
                    _ => None,
                }
            }

            /// JSON Schema of every payload, by wire name.
            #[cfg(feature = "schema")]
            pub fn schemas() -> Vec<(&'static str, schemars::schema::RootSchema)> {
                vec![$( ($wire, schemars::schema_for!($payload)), )*]
            }
        }

        $(
            impl From<$payload> for $name {
                fn from(p: $payload) -> Self { Self::$variant(p) }
            }
        )*
    };
}
