<?php

namespace App\Console;

use Illuminate\Console\Scheduling\Schedule;
use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

class Kernel extends ConsoleKernel
{
    /**
     * The application's command schedule.
     */
    protected function schedule(Schedule $schedule)
    {
        //
    }

    /**
     * The application's commands: closures in routes/console.php.
     */
    protected function commands()
    {
        require base_path('routes/console.php');
    }
}
