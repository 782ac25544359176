<?php

namespace App\Providers;

use Illuminate\Support\ServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    /**
     * Register application services.
     */
    public function register()
    {
        //
    }

    /**
     * Bootstrap application services.
     */
    public function boot()
    {
        //
    }
}
