<?php

namespace App\Http\Middleware;

use Illuminate\Foundation\Http\Middleware\VerifyCsrfToken as Middleware;

class VerifyCsrfToken extends Middleware
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
