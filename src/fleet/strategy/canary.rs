//! Canary: one host first (switched and health-checked on its own), then the rest together.

use crate::error::Result;
use crate::fleet::phases::Deploy;

pub struct Canary;

impl Canary {
    pub async fn run(&self, deploy: &mut Deploy<'_, '_>) -> Result<()> {
        let everyone = deploy.everyone();
        let (first, rest) = everyone.split_at(1.min(everyone.len()));
        super::batches::run(deploy, vec![first.to_vec(), rest.to_vec()]).await
    }
}
