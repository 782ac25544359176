//! Rolling: batches of N hosts, each prepared, switched and health-checked before the next.

use crate::error::Result;
use crate::fleet::phases::Deploy;

pub struct Rolling {
    /// Hosts per batch (at least 1).
    pub size: usize,
}

impl Rolling {
    pub async fn run(&self, deploy: &mut Deploy<'_, '_>) -> Result<()> {
        let everyone = deploy.everyone();
        let batches = everyone.chunks(self.size).map(<[usize]>::to_vec).collect();
        super::batches::run(deploy, batches).await
    }
}
