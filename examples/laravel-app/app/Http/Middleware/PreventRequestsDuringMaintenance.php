<?php

namespace App\Http\Middleware;

use Illuminate\Foundation\Http\Middleware\PreventRequestsDuringMaintenance as Middleware;

class PreventRequestsDuringMaintenance extends Middleware
{
    /**
     * The URIs (or cookie names) that are left alone.
     *
     * @var array
     */
    protected $except = [
        //
    ];
}
