<?php

use App\Http\Controllers\HealthController;
use App\Http\Controllers\HomeController;
use Illuminate\Support\Facades\Route;

/*
| Web routes, loaded by App\Providers\RouteServiceProvider in the "web" middleware group.
| Controllers rather than closures, so that `php artisan route:cache` works on any Laravel 8.
*/

Route::get('/', HomeController::class)->name('home');

Route::get('/health', HealthController::class)->name('health');
