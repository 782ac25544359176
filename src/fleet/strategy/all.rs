//! Every host at once: the whole fleet prepares, switches together at the barrier, and is
//! health-checked and watched before any host unlocks.

use crate::error::Result;

use crate::fleet::phases::Deploy;

pub struct All;

impl All {
    pub async fn run(&self, deploy: &mut Deploy<'_, '_>) -> Result<()> {
        let everyone = deploy.everyone();
        deploy.lock().await?;
        deploy.prepare(&everyone).await?;
        deploy.switch(&everyone, false).await?;
        deploy.verify(&everyone, false).await?;
        deploy.watch(&everyone, false).await?;
        deploy.finish().await
    }
}
