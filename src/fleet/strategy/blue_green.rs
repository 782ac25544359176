//! Blue-green: the release goes to the idle color only (prepared, migrated, switched and checked
//! there while it takes no traffic), then the routers send the traffic to it; its post-switch
//! checks and the watch window follow, and any failure sends the traffic back to the color that
//! was live, which this deploy never touched (the standby).

use crate::error::Result;
use crate::fleet::phases::Deploy;
use crate::fleet::post_switch::OnPostSwitchFailure;
use crate::fleet::traffic::TrafficSwitched;

use crate::config::deployfile::Color;

pub struct BlueGreen;

impl BlueGreen {
    pub async fn run(&self, deploy: &mut Deploy<'_, '_>) -> Result<()> {
        deploy.fleet.check_blue_green()?;
        // Every host is locked, routers and standby too; the release goes nowhere yet.
        for host in &mut deploy.fleet.hosts {
            host.bystander = true;
        }
        deploy.lock().await?;
        let live = deploy.fleet.live_color()?;
        let idle = live.map_or(Color::Blue, Color::other);
        let members = deploy.fleet.of_color(idle);
        for &i in &members {
            deploy.fleet.hosts[i].bystander = false;
        }
        deploy.prepare(&members).await?;
        deploy.switch(&members, true).await?;
        // An interrupt during that switch: the traffic does not move (the idle color stays
        // switched, taking none).
        deploy.fleet.ctx.interrupts.check()?;
        deploy.fleet.traffic = Some(TrafficSwitched {
            from: live,
            to: idle,
        });
        if let Err(error) = deploy.fleet.point_traffic(live, idle).await {
            // A router that could not switch: the traffic goes back as after a failed check.
            let policy = OnPostSwitchFailure::Rollback;
            return Err(deploy
                .fleet
                .post_switch_failed(error, &members, policy)
                .await);
        }
        deploy.verify(&members, true).await?;
        deploy.watch(&members, true).await?;
        deploy.finish_on(&members).await
    }
}
