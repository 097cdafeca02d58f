//! Stable labels for the enums whose values travel to log lines and metric
//! labels: [`labelled!`] writes, from one list of an enum's variants, the label
//! of a value and the array of every label, so the two cannot disagree and a
//! variant without a label does not compile.

/// Implements, for an enum, from one list of its variants:
///
/// - `COUNT` and `ALL`: how many labels there are and every one of them, in
///   the order of the list, a wrapped type's labels after the enum's own;
/// - `index()`: the position of a value's label in `ALL`, so a metric can keep
///   an array of counters indexed without a lookup;
/// - `label()`: that label.
///
/// A variant either has a label of its own, `Variant => "label"` (written
/// `Variant(..)` or `Variant { .. }` when it has fields), or, listed under
/// `wraps`, holds a value of another labelled type whose labels it takes:
///
/// ```text
/// labelled! {
///     RequestRefusal {
///         NoRoute => "no_route",
///         RouteRequiresCertificate(..) => "route_requires_certificate",
///     }
///     wraps {
///         ClientCertificate(Refusal),
///     }
/// }
/// ```
macro_rules! labelled {
    (
        $ty:ident {
            $( $variant:ident $( ( $($tuple:tt)* ) )? $( { $($fields:tt)* } )? => $label:literal ),* $(,)?
        }
        $( wraps { $( $wrapper:ident ( $inner:ty ) ),* $(,)? } )?
    ) => {
        impl $ty {
            /// How many labels there are.
            pub const COUNT: usize = {
                let own: &[&str] = &[$($label),*];
                own.len() $($( + <$inner>::COUNT )*)?
            };

            /// Every label, in the order of [`Self::index`].
            pub const ALL: [&'static str; Self::COUNT] = {
                let own: &[&str] = &[$($label),*];
                let mut all = [""; Self::COUNT];
                let mut at = 0;
                while at < own.len() {
                    all[at] = own[at];
                    at += 1;
                }
                $($(
                    let inner = <$inner>::ALL;
                    let mut i = 0;
                    while i < inner.len() {
                        all[at] = inner[i];
                        at += 1;
                        i += 1;
                    }
                )*)?
                all
            };

            /// The position of this value's label in [`Self::ALL`].
            pub fn index(&self) -> usize {
                #[allow(dead_code, non_camel_case_types)]
                enum Own { $($variant),* }
                #[allow(dead_code)]
                const OWN: usize = {
                    let own: &[&str] = &[$($label),*];
                    own.len()
                };
                $(
                    #[allow(dead_code, non_camel_case_types)]
                    enum Wrapped { $($wrapper),* }
                    /// Where the labels of the `n`th wrapped type begin in `ALL`.
                    const fn offset(n: usize) -> usize {
                        let widths = [$(<$inner>::COUNT),*];
                        let mut at = OWN;
                        let mut i = 0;
                        while i < n {
                            at += widths[i];
                            i += 1;
                        }
                        at
                    }
                )?
                match self {
                    $( $ty::$variant $( ( $($tuple)* ) )? $( { $($fields)* } )? => Own::$variant as usize, )*
                    $($(
                        $ty::$wrapper(inner) => {
                            const AT: usize = offset(Wrapped::$wrapper as usize);
                            AT + inner.index()
                        }
                    )*)?
                }
            }

            /// The stable snake_case label, for log lines and metric labels.
            pub fn label(&self) -> &'static str {
                Self::ALL[self.index()]
            }
        }
    };
}

pub(crate) use labelled;

/// Panics unless `labels` are distinct, non-empty snake_case words (what a log
/// field or a Prometheus label value may rely on).
#[cfg(test)]
pub(crate) fn assert_distinct_snake_case(labels: &[&str]) {
    let mut seen = std::collections::HashSet::new();
    for label in labels {
        assert!(seen.insert(label), "the label {label:?} is given twice");
        let snake = label
            .split('_')
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert!(snake && label.as_bytes()[0].is_ascii_lowercase(), "the label {label:?} is not snake_case");
    }
}
