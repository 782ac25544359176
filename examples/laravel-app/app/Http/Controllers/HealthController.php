<?php

namespace App\Http\Controllers;

use Illuminate\Http\Response;

class HealthController extends Controller
{
    /**
     * GET /health: "ok" as plain text, for load balancers and deploy health checks.
     */
    public function __invoke(): Response
    {
        return response('ok', 200, ['Content-Type' => 'text/plain; charset=UTF-8']);
    }
}
