<?php

namespace App\Listeners;

use Illuminate\Database\Events\MigrationsEnded;
use Illuminate\Support\Facades\Log;

class LogMigrationsEnded
{
    /**
     * Note in the log that a migration run finished.
     */
    public function handle(MigrationsEnded $event)
    {
        Log::info('migrations ended', ['method' => $event->method]);
    }
}
