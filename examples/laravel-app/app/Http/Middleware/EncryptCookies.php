<?php

namespace App\Http\Middleware;

use Illuminate\Cookie\Middleware\EncryptCookies as Middleware;

class EncryptCookies extends Middleware
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
