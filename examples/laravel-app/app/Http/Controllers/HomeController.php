<?php

namespace App\Http\Controllers;

use App\Models\Note;
use Illuminate\Foundation\Application;

class HomeController extends Controller
{
    /**
     * GET /: the application's name and version, and what the database holds.
     */
    public function __invoke()
    {
        return view('welcome', [
            'name' => config('app.name'),
            'version' => config('app.version'),
            'laravel' => Application::VERSION,
            'notes' => Note::query()->count(),
        ]);
    }
}
