//! Per-path rules of a host (`routes`): which route a request path falls under (the longest
//! matching `pathPrefix`, an exact path beating nothing shorter), and the methods it admits.
//! The names a route admits are the policy's own kind of rule; this module holds them as `N`
//! and never looks inside.

use crate::config::RouteConfig;
use crate::request_path::{canonical, PathProblem};

/// What a route is chosen by: the request's `:path` (as received) and `:method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// `:path`, query included.
    pub path: &'a str,
    /// `:method`.
    pub method: &'a str,
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route<N> {
    /// `pathPrefix` as written.
    pub path: String,
    /// Whether it is a prefix (ends with `/`) rather than an exact path.
    pub prefix: bool,
    /// The methods it admits (absent: any).
    pub methods: Option<Vec<String>>,
    /// Who may pass on it (absent: the host's names).
    pub names: Option<N>,
}

/// A host's (or the top level's) routes.
#[derive(Debug, Clone)]
pub struct RouteTable<N> {
    routes: Vec<Route<N>>,
    /// `routesOnly`: a path no route matches is refused.
    pub only: bool,
}

/// What is wrong with a route, by its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError<E> {
    /// `pathPrefix` is not a canonical absolute path.
    #[error("routes[{index}].pathPrefix: {path:?} {why}")]
    BadPath {
        /// Position in `routes`.
        index: usize,
        /// As written.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// Two routes with the same `pathPrefix`.
    #[error("routes[{index}].pathPrefix: {path:?} is listed twice")]
    Duplicate {
        /// Position of the second.
        index: usize,
        /// The path.
        path: String,
    },
    /// A method that is not an HTTP token, or an empty list.
    #[error("routes[{index}].methods: {why}")]
    BadMethods {
        /// Position in `routes`.
        index: usize,
        /// Why.
        why: String,
    },
    /// `routesOnly` without routes.
    #[error("routesOnly: true needs routes")]
    OnlyWithoutRoutes,
    /// The route's names did not compile.
    #[error(transparent)]
    Names(E),
}

/// Compiles routes; `names` compiles a route's name lists (index, config).
pub fn compile<N, E>(
    routes: &[RouteConfig],
    only: bool,
    names: impl Fn(usize, &RouteConfig) -> Result<Option<N>, E>,
) -> Result<RouteTable<N>, RouteError<E>> {
    if only && routes.is_empty() {
        return Err(RouteError::OnlyWithoutRoutes);
    }
    let mut compiled: Vec<Route<N>> = Vec::with_capacity(routes.len());
    for (index, route) in routes.iter().enumerate() {
        let path = &route.path_prefix;
        let bad = |why| RouteError::BadPath {
            index,
            path: path.clone(),
            why,
        };
        if path.contains(['?', '#']) {
            return Err(bad(
                "holds a query or fragment: routes match the path alone",
            ));
        }
        canonical(path).map_err(|problem| bad(path_problem_text(problem)))?;
        if compiled.iter().any(|r| &r.path == path) {
            return Err(RouteError::Duplicate {
                index,
                path: path.clone(),
            });
        }
        compiled.push(Route {
            path: path.clone(),
            prefix: path.ends_with('/'),
            methods: compile_methods(index, route.methods.as_deref())?,
            names: names(index, route).map_err(RouteError::Names)?,
        });
    }
    Ok(RouteTable {
        routes: compiled,
        only,
    })
}

/// The methods a route admits: HTTP tokens, kept exact (methods are case-sensitive).
fn compile_methods<E>(
    index: usize,
    methods: Option<&[String]>,
) -> Result<Option<Vec<String>>, RouteError<E>> {
    let Some(methods) = methods else {
        return Ok(None);
    };
    let bad = |why: String| RouteError::BadMethods { index, why };
    if methods.is_empty() {
        return Err(bad(
            "empty: a route that admits no method refuses everything; leave methods out for any"
                .into(),
        ));
    }
    for method in methods {
        if method.is_empty() || !method.bytes().all(is_token_byte) {
            return Err(bad(format!("{method:?} is not an HTTP method name")));
        }
    }
    Ok(Some(methods.to_vec()))
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a configuration error says of a path problem.
fn path_problem_text(problem: PathProblem) -> &'static str {
    match problem {
        PathProblem::NotAbsolute => "must start with /",
        PathProblem::DotSegment => "holds a . or .. segment",
        PathProblem::EmptySegment => "holds an empty segment (//)",
        PathProblem::EncodedSeparator => "holds an encoded slash or backslash",
        PathProblem::NeedlessEncoding => {
            "percent-encodes a character that needs none, or is malformed"
        }
        PathProblem::ForbiddenByte => "holds a byte RFC 3986 keeps out of paths",
    }
}

impl<N> RouteTable<N> {
    /// Whether there are routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route a canonical path falls under: the longest matching one.
    pub fn select(&self, path: &str) -> Option<&Route<N>> {
        self.routes
            .iter()
            .filter(|r| {
                if r.prefix {
                    path.starts_with(&r.path)
                } else {
                    path == r.path
                }
            })
            .max_by_key(|r| r.path.len())
    }
}

impl<N> Route<N> {
    /// Whether it admits the method (exact comparison).
    pub fn admits_method(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, methods: Option<&[&str]>) -> RouteConfig {
        RouteConfig {
            path_prefix: path.into(),
            methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            allowed_sans: None,
            allowed_subjects: None,
        }
    }

    fn table(routes: &[RouteConfig]) -> RouteTable<()> {
        compile(routes, false, |_, _| Ok::<_, String>(None)).unwrap()
    }

    #[test]
    fn the_longest_match_decides() {
        let t = table(&[
            route("/", None),
            route("/payments/", Some(&["GET", "POST"])),
            route("/payments/refunds/", Some(&["POST"])),
            route("/status", Some(&["GET"])),
        ]);
        let path = |p: &str| t.select(p).map(|r| r.path.as_str());
        assert_eq!(path("/payments/refunds/7"), Some("/payments/refunds/"));
        assert_eq!(path("/payments/charge"), Some("/payments/"));
        assert_eq!(path("/payments"), Some("/"));
        assert_eq!(path("/status"), Some("/status"));
        assert_eq!(path("/status/x"), Some("/"));
        assert_eq!(path("/statusx"), Some("/"));
        let status = t.select("/status").unwrap();
        assert!(status.admits_method("GET"));
        assert!(!status.admits_method("get"));
        assert!(!status.admits_method("POST"));
        let no_root = table(&[route("/payments/", None)]);
        assert!(no_root.select("/other").is_none());
    }

    #[test]
    fn bad_routes_are_named() {
        let err = |routes: &[RouteConfig], only| {
            compile(routes, only, |_, _| Ok::<Option<()>, String>(None))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[route("payments/", None)], false).contains("routes[0].pathPrefix"));
        assert!(err(&[route("/a/../b/", None)], false).contains(". or .."));
        assert!(err(&[route("/a?x=1", None)], false).contains("query"));
        assert!(err(&[route("/a/", None), route("/a/", None)], false).contains("routes[1]"));
        assert!(err(&[route("/a/", Some(&[]))], false).contains("routes[0].methods"));
        assert!(err(&[route("/a/", Some(&["GE T"]))], false).contains("GE T"));
        assert!(err(&[], true).contains("routesOnly"));
    }
}
