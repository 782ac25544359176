//! The configuration: raw Deployfile and recipe shapes, recipes and imports, the resolved
//! project, hosts and selectors, variables and their precedence, templates, `.env` layering.

pub mod deployfile;
pub mod dotenv;
pub mod host;
pub mod local;
pub mod project;
pub mod recipe;
pub mod selector;
pub mod template;
pub mod vars;
