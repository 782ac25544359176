//! The watch window on real web hosts: nginx and php-fpm (tests/support/web.rs) serve a real
//! Laravel 8 application (`examples/laravel-app`, deployed by the built-in `laravel` recipe to
//! two local hosts) while dep watches it after the switch. Versions of the app made for the
//! purpose decide how it behaves, by the `WATCH_MODE` file shipped in the release:
//!
//! - `flaky`: `GET /visits` (a critical probe) fails one request in four with a 500, while
//!   `/health` answers 200: the health check passes, the watch window rolls back;
//! - `slow`: `GET /search` (not critical, `max_p95_ms = 800`) takes 1.2s: kept, with an alert;
//! - empty: every probe within its thresholds.
//!
//! The queue depth probe is the `laravel` recipe's `queue_size_command`. Needs what
//! tests/laravel.rs and tests/zero_downtime.rs need (scripts/setup-test-deps).

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::net::HookServer;
use crate::support::process::Watchdog;
use crate::support::project::{Output, TestProject, T1, T2, T3};
use crate::support::web::{serve_hosts, WebServer};

/// No test here may run longer than this.
const LIMIT: Duration = Duration::from_secs(150);

const APP_KEY: &str = "base64:61Fuhx8nh8gr4KY5p43Iio0ptevOc0P80wQl7DmQT1s=";

const WATCH_CONTROLLER: &str = r#"<?php

namespace App\Http\Controllers;

use Illuminate\Http\Response;

/** The endpoints the watch window probes; `WATCH_MODE` in the release decides how they behave. */
class WatchController extends Controller
{
    /** GET /visits: counts visits per host (shared storage); `flaky` fails every fourth. */
    public function visits(): Response
    {
        $file = storage_path('app/visits.count');
        $handle = fopen($file, 'c+');
        flock($handle, LOCK_EX);
        $n = (int) stream_get_contents($handle) + 1;
        ftruncate($handle, 0);
        rewind($handle);
        fwrite($handle, (string) $n);
        flock($handle, LOCK_UN);
        fclose($handle);
        if ($this->mode() === 'flaky' && $n % 4 === 0) {
            return response("visit $n failed\n", 500);
        }
        return response("visit $n\n", 200, ['Content-Type' => 'text/plain']);
    }

    /** GET /search: `slow` takes 1.2s. */
    public function search(): Response
    {
        if ($this->mode() === 'slow') {
            usleep(1200000);
        }
        return response("results\n", 200, ['Content-Type' => 'text/plain']);
    }

    private function mode(): string
    {
        return trim((string) @file_get_contents(base_path('WATCH_MODE')));
    }
}
"#;

const ROUTES: &str = r#"
Route::get('/visits', [App\Http\Controllers\WatchController::class, 'visits']);
Route::get('/search', [App\Http\Controllers\WatchController::class, 'search']);
"#;

/// The recipe, the health check, the window and its probes.
const DEPLOYFILE: &str = r#"
# Laravel 8 does not create a missing SQLite database; a real project's first deploy would.
[tasks."db:create"]
once = true
cwd = "{{ release_path }}"
after = "db:backup"
run = '''
db=$(sed -n 's/^DB_DATABASE=//p' .env | tail -n 1)
if [ ! -e "$db" ]; then mkdir -p "$(dirname "$db")"; : > "$db"; fi
'''

# Generous: the first request after a deploy on a loaded test machine can be slow.
[[health]]
http = "http://127.0.0.1:{{ web_port }}/health"
expect_body = "ok"
timeout = "30s"
attempts = 3

[watch]
duration = "2s"
interval = "200ms"

[[watch.probe]]
name = "visits"
http = "http://127.0.0.1:{{ web_port }}/visits"
critical = true

[[watch.probe]]
name = "search"
http = "http://127.0.0.1:{{ web_port }}/search"
max_p95_ms = 800

[[watch.probe]]
name = "queue"
command = "{{ queue_size_command }}"
max_value = 1000
"#;

/// Two local hosts serving the Laravel app through nginx and php-fpm, a webhook for every
/// trigger, and the shared SQLite database.
struct Site {
    project: TestProject,
    _web: WebServer,
    hook: HookServer,
    db: PathBuf,
}

impl Site {
    fn new() -> Site {
        let hook = HookServer::start();
        let project = TestProject::empty()
            .fleet(2)
            .top("import = [\"laravel\"]\nsecrets = [\"DEP_ENV_APP_KEY\"]")
            .config("application", "\"laravel-example\"")
            .config("strategy", "\"upload\"")
            .config("upload_from", "\".\"")
            .config(
                "upload_exclude",
                r#"[".git", "vendor", "hosts", "database-server", "Deployfile.toml", ".env"]"#,
            )
            .config("dotenv_render", "true")
            .deployfile(DEPLOYFILE)
            .deployfile(&format!(
                "[[notify]]\nwebhook = {:?}\nkind = \"json\"\n",
                hook.url("/hook")
            ));
        project.copy_laravel_example();
        project.write("app/Http/Controllers/WatchController.php", WATCH_CONTROLLER);
        let routes = fs::read_to_string(project.join("routes/web.php")).unwrap();
        project.write("routes/web.php", &format!("{routes}{ROUTES}"));
        let db = project.join("database-server/app.sqlite");
        let (project, web) = serve_hosts(project);
        Site {
            project,
            _web: web,
            hook,
            db,
        }
    }

    /// The app's next version: `WATCH_MODE` says how it behaves.
    fn version(&self, mode: &str) {
        self.project.write("WATCH_MODE", &format!("{mode}\n"));
    }

    fn dep(&self, args: &[&str], now: &str) -> Output {
        let db = self.db.display().to_string();
        self.project.run_env(
            args,
            &[
                ("DEP_NOW", now),
                ("DEP_ENV_APP_KEY", APP_KEY),
                ("DEP_ENV_DB_DATABASE", &db),
            ],
        )
    }

    fn current(&self) -> Vec<Option<String>> {
        ["h1", "h2"].map(|h| self.project.current(h)).to_vec()
    }

    /// The notifications received so far: (event, message).
    fn notified(&self) -> Vec<(String, String)> {
        self.hook
            .seen()
            .iter()
            .map(|h| h.json())
            .map(|v| {
                (
                    v["event"].as_str().unwrap_or_default().to_string(),
                    v["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn last_notified(&self, event: &str) -> String {
        self.notified()
            .into_iter()
            .rev()
            .find(|(e, _)| e == event)
            .unwrap_or_else(|| panic!("no {event} notification: {:?}", self.notified()))
            .1
    }
}

fn some(release: &str) -> Vec<Option<String>> {
    vec![Some(release.to_string()); 2]
}

#[test]
fn a_release_failing_a_critical_endpoint_is_rolled_back_though_its_health_check_passes() {
    let _watchdog = Watchdog::arm("laravel watch rollback", LIMIT);
    let site = Site::new();
    site.version("");
    let healthy = site.dep(&["deploy", "test"], T1);
    healthy.success();
    healthy.stdout_has("watch verdict: normal");
    assert_eq!(site.current(), some(T1));
    let normal = site.last_notified("watch_normal");
    assert!(
        normal.contains("`queue` across the fleet: 20 samples, 0 failed (0%), max value 0"),
        "{normal}"
    );

    site.version("flaky");
    let flaky = site.dep(&["deploy", "test"], T2);

    flaky.expect_status(4);
    // One visit in four fails (the count goes on from v1's window): whichever share it came to
    // when the verdict was certain, it is far above 1%.
    flaky.stderr_has("failed its watch window (an error rate is above its threshold)");
    flaky.stderr_has("probe `visits` on host `h1`: error rate ");
    flaky.stdout_has("♥ http://127.0.0.1:");
    flaky.stdout_has("rolled back 2 hosts to the release they had before; verified");
    assert_eq!(site.current(), some(T1));
    for host in ["h1", "h2"] {
        assert_eq!(
            site.project.last_status(host, T2).as_deref(),
            Some("failed")
        );
        assert!(!site.project.locked(host));
    }
    let rollback = site.last_notified("deploy_rolled_back");
    assert!(
        rollback.contains("probe `visits` on host `h2`: error rate "),
        "{rollback}"
    );
    assert!(rollback.contains("%, above 1%"), "{rollback}");
}

#[test]
fn a_slow_optional_endpoint_only_alerts_and_dep_watch_says_so_too() {
    let _watchdog = Watchdog::arm("laravel watch alert", LIMIT);
    let site = Site::new();
    site.version("");
    site.dep(&["deploy", "test", "--no-watch"], T1).success();

    let live = site.dep(&["watch", "test", "--duration", "1s"], T3);
    live.success();
    live.stdout_has("watch verdict: normal");
    assert_eq!(
        site.notified().last().map(|(e, _)| e.as_str()),
        Some("watch_normal")
    );

    site.version("slow");
    let slow = site.dep(&["deploy", "test"], T2);

    slow.success();
    slow.stdout_has("watch verdict: alert");
    assert_eq!(site.current(), some(T2));
    let alert = site.last_notified("watch_alert");
    assert!(
        alert.contains("probe `search` on host `h1`: p95 "),
        "{alert}"
    );
    assert!(alert.contains("ms, above 800 ms"), "{alert}");
    assert!(!alert.contains("`visits` on"), "{alert}");

    let breached = site.dep(&["watch", "test", "--duration", "1s"], T3);
    breached.expect_status(1);
    breached.stderr_has("probe `search` on host `h2`: p95 ");
    assert_eq!(site.current(), some(T2), "dep watch changes nothing");
}
