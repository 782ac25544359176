<?php

use App\Models\Note;
use Illuminate\Support\Facades\Artisan;

/*
| Console commands as closures.
*/

Artisan::command('app:version', function () {
    $this->line(config('app.name').' '.config('app.version'));
})->purpose('Print the application name and version');

Artisan::command('note:add {body}', function (string $body) {
    $note = Note::create(['body' => $body]);
    $this->line("note {$note->id} added");
})->purpose('Add a note to the database');
