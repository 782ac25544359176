<?php

namespace App\Providers;

use Illuminate\Foundation\Support\Providers\EventServiceProvider as ServiceProvider;

class EventServiceProvider extends ServiceProvider
{
    /**
     * The event listener mappings for the application.
     *
     * @var array
     */
    protected $listen = [
        \Illuminate\Database\Events\MigrationsEnded::class => [
            \App\Listeners\LogMigrationsEnded::class,
        ],
    ];

    /**
     * Register any events for the application.
     */
    public function boot()
    {
        //
    }
}
